package gilmsg

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

// signingConfig is a bus that signs everything as certname, from a copy of
// testdata/pki, with the CA and the CRL of that copy.
func signingConfig(pki, certname string) *Config {
	cfg := DefaultConfig()
	cfg.Name = "signer"
	cfg.Endpoints = map[string][]string{"signer": {"tcp://127.0.0.1:*"}}
	cfg.SignMessages = true
	cfg.SSLDir = pki
	cfg.Certnames = map[string]string{"signer": certname}
	cfg.CACertLocation = filepath.Join(pki, "ca.crt")
	cfg.CRLLocation = filepath.Join(pki, "crl.pem")
	return cfg
}

// issueNotYetValid writes <pki>/future01.{crt,key}: a certificate of the
// test CA whose validity starts in a year.
func issueNotYetValid(t *testing.T, pki string) {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(pki, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	ca, err := NewSigner(read("ca.key"), read("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().AddDate(1, 0, 0)
	cert, err := devpki.HostCert("future01.example.org", key, big.NewInt(0x7001), start, start.AddDate(1, 0, 0), ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := devpki.WriteCertAndKey(pki, "future01", cert, key); err != nil {
		t.Fatal(err)
	}
}

// A bus that will sign refuses to start with a certificate that every
// receiver would refuse, and says which file and why.
func TestNewRefusesUnusableCertificate(t *testing.T) {
	pki := copyPKI(t)
	issueNotYetValid(t, pki)
	// A certificate with another host's key.
	mismatch := t.TempDir()
	for from, to := range map[string]string{"shell-app01.crt": "mixed.crt", "bodhi-backend01.key": "mixed.key"} {
		data, err := os.ReadFile(filepath.Join(pki, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mismatch, to), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name, ssldir, certname string
		want                   []string // "" : New succeeds
	}{
		{"valid", pki, "shell-app01", nil},
		{"expired", pki, "expired01", []string{"expired01.crt", "expired01.example.org", "expired at 2021-01-01T00:00:00Z"}},
		{"not yet valid", pki, "future01", []string{"future01.crt", "not valid until " + time.Now().AddDate(1, 0, 0).UTC().Format("2006-")}},
		{"revoked", pki, "revoked01", []string{"revoked01.crt", "revoked by the CRL " + filepath.Join(pki, "crl.pem"), "serial 4099"}},
		{"key not matching", mismatch, "mixed", []string{"mixed.crt", "does not match the private key " + filepath.Join(mismatch, "mixed.key")}},
		{"missing", pki, "nobody01", []string{"nobody01.key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := signingConfig(pki, tc.certname)
			cfg.SSLDir = tc.ssldir
			bus, err := New(cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				bus.Close()
				return
			}
			if err == nil {
				bus.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrCannotSign) {
				t.Errorf("error %v does not match ErrCannotSign", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.name == "not yet valid" && strings.Contains(err.Error(), "expired") {
				t.Errorf("error %q calls a not-yet-valid certificate expired", err)
			}
		})
	}
}

// Without a CA or CRL at hand a publisher still starts: it need not
// validate anything to sign.
func TestNewSignsWithoutCA(t *testing.T) {
	pki := copyPKI(t)
	cfg := signingConfig(pki, "shell-app01")
	cfg.CACertLocation = filepath.Join(pki, "missing-ca.crt")
	bus, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bus.Close()
}

// TestBase64Wrap76 holds the signature and certificate fields to their
// line breaks: every 76 characters and at the end, "\n" alone for nothing.
func TestBase64Wrap76(t *testing.T) {
	for n := range 600 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		enc := base64.StdEncoding.EncodeToString(b)
		var want strings.Builder
		for len(enc) > 76 {
			want.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		want.WriteString(enc + "\n")
		if got := base64Wrap76(b); got != want.String() {
			t.Fatalf("%d bytes:\ngot  %q\nwant %q", n, got, want.String())
		}
	}
}
