package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Only without root may a missing broker skip: as root, make deps installs
// it, so a failed install or a package without the program fails the test.
func TestEnsureInstalled(t *testing.T) {
	present := filepath.Join(t.TempDir(), "rabbitmq-server")
	if err := os.WriteFile(present, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "rabbitmq-server")
	aptFailed := func() error { return errors.New("E: Unable to locate package rabbitmq-server") }
	noop := func() error { return nil }
	cases := []struct {
		name    string
		program string
		root    bool
		install func() error
		want    string // "" ok, "skip", else a failure containing this
	}{
		{"installed, root", present, true, aptFailed, ""},
		{"installed, not root", present, false, aptFailed, ""},
		{"missing, not root", missing, false, noop, "skip"},
		{"missing, root, apt-get fails", missing, true, aptFailed, "Unable to locate package"},
		{"missing, root, package without the program", missing, true, noop, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ensureInstalled(tc.program, tc.root, tc.install)
			var skip *SkipError
			switch {
			case tc.want == "":
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
			case tc.want == "skip":
				if !errors.As(err, &skip) {
					t.Errorf("got %v, want a *SkipError", err)
				}
			case err == nil || errors.As(err, &skip) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("got %v (%T), want a failure, not a skip, saying %q", err, err, tc.want)
			}
		})
	}
}
