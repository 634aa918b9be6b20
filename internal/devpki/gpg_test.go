package devpki

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// The key file holds one unprotected secret key per host, under the
// fingerprint Keys names; the GnuPG home, when gpg is installed, holds the
// same secret keys.
func TestNewGPG(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gpg")
	hosts := []string{"web01", "billing01"}
	d, err := NewGPG(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if d.Home != "" {
		t.Cleanup(func() { exec.Command("gpgconf", "--homedir", d.Home, "--kill", "all").Run() })
	}
	f, err := os.Open(d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		t.Fatalf("keys.asc: %v", err)
	}
	if len(ring) != len(hosts) || len(d.Keys) != len(hosts) {
		t.Fatalf("%d keys in the file, %d in Keys, want %d", len(ring), len(d.Keys), len(hosts))
	}
	for _, e := range ring {
		fpr := strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
		var host string
		for id := range e.Identities {
			host, _, _ = strings.Cut(id, " ")
		}
		switch {
		case d.Keys[host] != fpr:
			t.Errorf("key of %q: Keys says %q, the file %q", host, d.Keys[host], fpr)
		case e.PrivateKey == nil || e.PrivateKey.Encrypted:
			t.Errorf("key of %q: no unprotected secret key", host)
		}
	}
	if fi, err := os.Stat(d.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v %v, want 0600", fi.Mode(), err)
	}

	if _, err := exec.LookPath("gpg"); err == nil {
		if d.Home == "" {
			t.Fatal("gpg is installed but no GnuPG home was made")
		}
		out, err := exec.Command("gpg", "--homedir", d.Home, "--batch", "--with-colons", "--list-secret-keys").Output()
		if err != nil {
			t.Fatalf("gpg --list-secret-keys: %v", err)
		}
		for host, fpr := range d.Keys {
			if !strings.Contains(string(out), "fpr:::::::::"+fpr+":") {
				t.Errorf("GnuPG home lacks %s's secret key %s:\n%s", host, fpr, out)
			}
		}
	}

	if _, err := NewGPG(dir, []string{"web01"}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second NewGPG in the same place = %v, want fs.ErrExist", err)
	}
	if _, err := NewGPG(t.TempDir(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewGPG with no host = %v, want ErrInvalid", err)
	}
}
