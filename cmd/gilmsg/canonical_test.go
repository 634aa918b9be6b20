package main

import (
	"context"
	"strings"
	"testing"
)

// runCanonical runs `gilmsg canonical` through run, as main does, with
// stdin, stdout and stderr replaced.
func runCanonical(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	r := runCLIWith(t, context.Background(), strings.NewReader(stdin), &out, &errOut, append([]string{"canonical"}, args...)...)
	return r.code, r.stdout, r.stderr
}

func TestCanonicalCommand(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100_000) // 200 KB, past any 64 KB line limit
	tests := []struct {
		name      string
		stdin     string
		args      []string
		code      int
		stdout    string
		stderrHas string
	}{
		{
			name:   "lines",
			stdin:  "{\"b\":1,\"a\":[1.0,-0,1e16]}\n\n   \n\"\\ud800</>\"\r\n",
			stdout: "{\"a\":[1.0,0,1e+16],\"b\":1}\n\"\\ud800</>\"\n",
		},
		{
			name:   "last line without newline",
			stdin:  "[NaN]\n{ }",
			stdout: "[NaN]\n{}\n",
		},
		{
			name:   "long line",
			stdin:  `{"s":"` + long + `"}` + "\n",
			stdout: `{"s":"` + strings.Repeat(`\u00e9`, 100_000) + `"}` + "\n",
		},
		{name: "empty input", stdin: ""},
		{name: "arguments", stdin: "1\n", args: []string{"x.json"}, code: exitUsage, stderrHas: "takes no arguments"},
		{
			name:      "invalid line",
			stdin:     "1\n\n[1,]\n2\n",
			code:      exitFailure,
			stdout:    "1\n",
			stderrHas: "line 3: gilmsg: invalid JSON: offset 3:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCanonical(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if stdout != tt.stdout {
				t.Errorf("stdout %.200q, want %.200q", stdout, tt.stdout)
			}
			if tt.stderrHas == "" && stderr != "" || !strings.Contains(stderr, tt.stderrHas) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.stderrHas)
			}
		})
	}
}
