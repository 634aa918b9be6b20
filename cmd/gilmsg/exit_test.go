package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/spf13/cobra"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	timeout := &gilmsg.AckTimeoutError{Missing: []string{"b"}, Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain error", errors.New("boom"), exitFailure},
		{"config error", fmt.Errorf("loading: %w", gilmsg.ErrConfig), exitFailure},
		{"ACK timeout", timeout, exitTimeout},
		{"wrapped ACK timeout", fmt.Errorf("line 3: %w", timeout), exitTimeout},
		{"explicit code wins", &exitError{code: exitUsage, err: timeout}, exitUsage},
		{"usage", usageErrorf("bad %s", "flag"), exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode = %d, want %d", got, tc.want)
			}
			// What run sees after a command wrapped its error.
			if got := exitCode(withExitCode(tc.err)); got != tc.want {
				t.Errorf("exitCode(withExitCode) = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"no-such-command"}, exitUsage, ""},
		{[]string{"--no-such-flag"}, exitUsage, ""},
		{[]string{"tail", "--no-such-flag"}, exitUsage, ""},
		{[]string{"verify", "--config"}, exitUsage, ""},
		{[]string{}, exitOK, "3  a reliable publish was not ACKed"}, // not nil: cobra would read os.Args
		{[]string{"--help"}, exitOK, "Exit status, the same for every command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runCLI(t, nil, tc.args...)
			if res.code != tc.code || !strings.Contains(res.stdout, tc.out) {
				t.Errorf("exit %d, stdout %q; want %d and %q", res.code, res.stdout, tc.code, tc.out)
			}
		})
	}
}

// The CLI names itself once a line, however deep the library's error was
// wrapped.
func TestErrorLineSaysGilmsgOnce(t *testing.T) {
	t.Parallel()
	var errOut strings.Builder
	root := &cobra.Command{Use: "gilmsg", SilenceErrors: true, SilenceUsage: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("line 1: %w", fmt.Errorf("%w: no relay at tcp://10.0.0.1:9941 within 2s", gilmsg.ErrNotConnected))
		}}
	root.SetErr(&errOut)
	if code := execute(root, []string{}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if got, want := errOut.String(), "gilmsg: line 1: not connected: no relay at tcp://10.0.0.1:9941 within 2s\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}
