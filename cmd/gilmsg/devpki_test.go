package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

func runDevPKI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newDevPKICmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestDevPKICommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	hosts := []string{"pub01.example.org", "sub01.example.org"}
	out, err := runDevPKI(t, dir, "--hosts", strings.Join(hosts, ","), "--base-port", "4100", "--key-bits", "1024")
	if err != nil {
		t.Fatalf("dev-pki: %v\n%s", err, out)
	}
	configPath := filepath.Join(dir, "fedmsg.json")
	if first, _, _ := strings.Cut(out, "\n"); first != configPath {
		t.Errorf("first line %q, want the config path %q", first, configPath)
	}
	for _, f := range []string{"ca.crt", "ca.key", "crl.pem", "pub01.example.org.crt", "pub01.example.org.key", "sub01.example.org.crt", "sub01.example.org.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	data, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var c gilmsg.Config
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("config does not parse: %v", err)
	}
	for i, h := range hosts {
		if c.Certnames[h] != h {
			t.Errorf("certnames[%q] = %q", h, c.Certnames[h])
		}
		want := []string{"tcp://127.0.0.1:" + []string{"4100", "4101"}[i]}
		if !slices.Equal(c.Endpoints[h], want) {
			t.Errorf("endpoints[%q] = %v, want %v", h, c.Endpoints[h], want)
		}
	}
	if c.SSLDir != dir || c.CACertLocation != filepath.Join(dir, "ca.crt") || !c.SignMessages {
		t.Errorf("config does not point at the PKI: %+v", c)
	}

	t.Run("again refuses", func(t *testing.T) {
		if _, err := runDevPKI(t, dir, "--key-bits", "1024"); err == nil {
			t.Error("a second dev-pki into the same DIR succeeded")
		}
	})
	t.Run("config-out", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "bus.json")
		out, err := runDevPKI(t, filepath.Join(t.TempDir(), "pki"), "--config-out", other, "--key-bits", "1024")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, other+"\n") {
			t.Errorf("output %q does not start with %s", out, other)
		}
		if _, err := os.Stat(other); err != nil {
			t.Error(err)
		}
	})
}

func TestDevPKICommandUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
	}{
		{"no dir", nil},
		{"two dirs", []string{"a", "b"}},
		{"bad host", []string{"DIR", "--hosts", "../escape"}},
		{"port too high", []string{"DIR", "--base-port", "65535", "--hosts", "a,b"}},
		{"port zero", []string{"DIR", "--base-port", "0"}},
		{"huge key", []string{"DIR", "--key-bits", "100000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			args := slices.Clone(tc.args)
			for i, a := range args {
				if a == "DIR" {
					args[i] = dir
				}
			}
			_, err := runDevPKI(t, args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Errorf("err = %v, want exit code %d", err, exitUsage)
			}
			if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
				t.Error("a CA was created despite the usage error")
			}
		})
	}
}

func TestDevPKICommandGPG(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	if out, err := runDevPKI(t, dir, "--hosts", "web01,db01", "--key-bits", "1024", "--gpg"); err != nil {
		t.Fatalf("dev-pki --gpg: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", filepath.Join(dir, "gpg", "gnupg"), "--kill", "all").Run()
	})
	data, err := os.ReadFile(filepath.Join(dir, "fedmsg.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c gilmsg.Config
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.GPGKeys) != 2 || c.GPGKeys["web01"] == "" || !slices.Contains(c.CryptoValidateBackends, "gpg") || c.GPGHome == "" {
		t.Fatalf("config: gpg_keys %v, backends %v, gpg_home %q", c.GPGKeys, c.CryptoValidateBackends, c.GPGHome)
	}
	if _, err := os.Stat(c.GPGHome); err != nil {
		t.Fatal(err)
	}
}
