package devpki

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastDevPKI is a PKI with small keys, which are quick to make.
func fastDevPKI(t *testing.T, hosts ...string) *PKI {
	t.Helper()
	p, err := New(t.TempDir(), Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// devReadKey reads a host's key and checks that it is the private half of
// the host's certificate, as a signer loading the pair needs.
func devReadKey(t *testing.T, p *PKI, host string) *rsa.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(devReadPEM(t, filepath.Join(p.Dir, host+".key"), "PRIVATE KEY"))
	if err != nil {
		t.Fatalf("%s key: %v", host, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s key is a %T, want RSA", host, k)
	}
	if !rk.PublicKey.Equal(devReadCert(t, filepath.Join(p.Dir, host+".crt")).PublicKey) {
		t.Errorf("%s: key and certificate do not pair", host)
	}
	return rk
}

func devReadPEM(t *testing.T, path, wantType string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != wantType {
		t.Fatalf("%s: want one PEM %q block, got %v", path, wantType, b)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: trailing data after the PEM block", path)
	}
	return b.Bytes
}

func devReadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(devReadPEM(t, path, "CERTIFICATE"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func devReadCRL(t *testing.T, p *PKI) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(devReadPEM(t, p.CRL, "X509 CRL"))
	if err != nil {
		t.Fatalf("crl: %v", err)
	}
	if err := crl.CheckSignatureFrom(devReadCert(t, p.CACert)); err != nil {
		t.Fatalf("CRL signature does not check against the CA: %v", err)
	}
	return crl
}

// devVerifyHost checks certname's chain to the CA at the given time.
func devVerifyHost(t *testing.T, p *PKI, certname string, at time.Time) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(devReadCert(t, p.CACert))
	_, err := devReadCert(t, filepath.Join(p.Dir, certname+".crt")).Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

func devCRLHas(crl *x509.RevocationList, serial *big.Int) bool {
	return slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
		return e.SerialNumber.Cmp(serial) == 0
	})
}

var shapeHosts = []string{"publisher01.example.org", "consumer01.example.org"}

func TestDevPKIShape(t *testing.T) {
	p := fastDevPKI(t, shapeHosts...)
	ca := devReadCert(t, p.CACert)
	t.Run("ca", func(t *testing.T) {
		switch {
		case ca.Version != 3:
			t.Errorf("version %d, want 3", ca.Version)
		case !ca.IsCA || !ca.BasicConstraintsValid:
			t.Error("CA lacks basicConstraints CA:TRUE")
		case ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
			t.Errorf("key usage %v, want certSign|crlSign", ca.KeyUsage)
		case len(ca.SubjectKeyId) == 0:
			t.Error("CA has no subjectKeyIdentifier")
		case ca.SignatureAlgorithm != x509.SHA256WithRSA:
			t.Errorf("signature algorithm %v", ca.SignatureAlgorithm)
		}
		if err := ca.CheckSignatureFrom(ca); err != nil {
			t.Errorf("CA is not self-signed: %v", err)
		}
	})
	for _, host := range shapeHosts {
		t.Run(host, func(t *testing.T) {
			c := devReadCert(t, filepath.Join(p.Dir, host+".crt"))
			switch {
			case c.Subject.CommonName != host:
				t.Errorf("CN %q, want %q", c.Subject.CommonName, host)
			case c.Version != 3:
				t.Errorf("version %d, want 3", c.Version)
			case c.IsCA || !c.BasicConstraintsValid:
				t.Error("host lacks basicConstraints CA:FALSE")
			case c.KeyUsage != x509.KeyUsageDigitalSignature:
				t.Errorf("key usage %v, want digitalSignature", c.KeyUsage)
			case !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}):
				t.Errorf("ext key usage %v", c.ExtKeyUsage)
			case !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId):
				t.Error("authorityKeyIdentifier is not the CA's subjectKeyIdentifier")
			case c.SignatureAlgorithm != x509.SHA256WithRSA:
				t.Errorf("signature algorithm %v", c.SignatureAlgorithm)
			}
			if err := devVerifyHost(t, p, host, time.Now()); err != nil {
				t.Errorf("chain does not verify: %v", err)
			}

			if bits := devReadKey(t, p, host).N.BitLen(); bits != 1024 {
				t.Errorf("key size %d, want the 1024 asked for", bits)
			}
			keyPath := filepath.Join(p.Dir, host+".key")
			if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode: %v %v, want 0600", fi.Mode(), err)
			}
		})
	}
	t.Run("crl", func(t *testing.T) {
		crl := devReadCRL(t, p)
		if len(crl.RevokedCertificateEntries) != 0 || crl.Number.Sign() <= 0 || !crl.NextUpdate.After(time.Now()) {
			t.Errorf("fresh CRL: %d entries, number %v, next update %v", len(crl.RevokedCertificateEntries), crl.Number, crl.NextUpdate)
		}
	})
}

func TestNewDefaults(t *testing.T) {
	p, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Hosts, []string{"shell-localhost"}) {
		t.Errorf("Hosts = %v", p.Hosts)
	}
	c := devReadCert(t, filepath.Join(p.Dir, "shell-localhost.crt"))
	if bits := c.PublicKey.(*rsa.PublicKey).N.BitLen(); bits != 2048 {
		t.Errorf("key size %d, want 2048", bits)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity %v, want about a year", d)
	}
	if !filepath.IsAbs(p.Dir) || p.CACert != filepath.Join(p.Dir, "ca.crt") || p.CRL != filepath.Join(p.Dir, "crl.pem") {
		t.Errorf("paths: %q %q %q", p.Dir, p.CACert, p.CRL)
	}
}

func TestDevPKIRevoke(t *testing.T) {
	p := fastDevPKI(t, "a.example.org", "b.example.org")
	serial := func(h string) *big.Int { return devReadCert(t, filepath.Join(p.Dir, h+".crt")).SerialNumber }
	a, b := serial("a.example.org"), serial("b.example.org")
	prev := devReadCRL(t, p).Number

	steps := []struct {
		revoke       string
		wantA, wantB bool
	}{
		{"a.example.org", true, false},
		{"a.example.org", true, false}, // again: no duplicate entry
		{"b.example.org", true, true},
	}
	for i, s := range steps {
		t.Run(fmt.Sprint(i, s.revoke), func(t *testing.T) {
			if err := p.Revoke(s.revoke); err != nil {
				t.Fatal(err)
			}
			crl := devReadCRL(t, p)
			if devCRLHas(crl, a) != s.wantA || devCRLHas(crl, b) != s.wantB {
				t.Errorf("CRL lists a=%v b=%v, want %v %v", devCRLHas(crl, a), devCRLHas(crl, b), s.wantA, s.wantB)
			}
			if n := len(crl.RevokedCertificateEntries); n != len(slices.DeleteFunc([]bool{s.wantA, s.wantB}, func(v bool) bool { return !v })) {
				t.Errorf("CRL has %d entries", n)
			}
			if crl.Number.Cmp(prev) <= 0 {
				t.Errorf("CRL number %v did not increase from %v", crl.Number, prev)
			}
			prev = crl.Number
			if !crl.NextUpdate.After(time.Now()) {
				t.Errorf("nextUpdate %v is not in the future", crl.NextUpdate)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		if err := p.Revoke("nobody.example.org"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Revoke(unknown) = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("reissued", func(t *testing.T) {
		// A fresh certificate under a revoked name is not revoked itself.
		if err := p.Issue("a.example.org"); err != nil {
			t.Fatal(err)
		}
		if devCRLHas(devReadCRL(t, p), serial("a.example.org")) {
			t.Error("reissued certificate is already revoked")
		}
	})
}

func TestDevPKIIssueExpired(t *testing.T) {
	p := fastDevPKI(t, "ok.example.org")
	if err := p.IssueExpired("old.example.org"); err != nil {
		t.Fatal(err)
	}
	c := devReadCert(t, filepath.Join(p.Dir, "old.example.org.crt"))
	if !c.NotAfter.Before(time.Now()) {
		t.Errorf("NotAfter %v is not in the past", c.NotAfter)
	}
	var inv x509.CertificateInvalidError
	if err := devVerifyHost(t, p, "old.example.org", time.Now()); !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Errorf("verify now = %v, want expired", err)
	}
	if err := devVerifyHost(t, p, "old.example.org", c.NotBefore.Add(time.Hour)); err != nil {
		t.Errorf("within its period it should verify: %v", err)
	}
	if err := p.Revoke("old.example.org"); err != nil {
		t.Errorf("revoking an expired certificate: %v", err)
	}
}

func TestDevPKIIssueRogue(t *testing.T) {
	p := fastDevPKI(t, "trusted.example.org")
	for _, name := range []string{"trusted.example.org", "rogue.example.org"} {
		t.Run(name, func(t *testing.T) {
			if err := p.IssueRogue(name); err != nil {
				t.Fatal(err)
			}
			c := devReadCert(t, filepath.Join(p.Dir, name+".crt"))
			if c.Subject.CommonName != name {
				t.Errorf("CN %q, want %q", c.Subject.CommonName, name)
			}
			var unk x509.UnknownAuthorityError
			if err := devVerifyHost(t, p, name, time.Now()); !errors.As(err, &unk) {
				t.Errorf("verify = %v, want unknown authority", err)
			}
			devReadKey(t, p, name)
		})
	}
	if err := p.Revoke("trusted.example.org"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Revoke after rogue replaced the files = %v, want fs.ErrNotExist", err)
	}
}

func TestDevPKIBadInput(t *testing.T) {
	existing := t.TempDir()
	if err := os.WriteFile(filepath.Join(existing, "ca.key"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  string
		opts Options
		want error
	}{
		{"no hosts", "", Options{Hosts: []string{}}, ErrInvalid},
		{"empty host", "", Options{Hosts: []string{""}}, ErrInvalid},
		{"path escape", "", Options{Hosts: []string{"../x"}}, ErrInvalid},
		{"dot dot", "", Options{Hosts: []string{".."}}, ErrInvalid},
		{"the CA's name", "", Options{Hosts: []string{"ca"}}, ErrInvalid},
		{"duplicate", "", Options{Hosts: []string{"a", "a"}}, ErrInvalid},
		{"small key", "", Options{KeyBits: 512}, ErrInvalid},
		{"huge key", "", Options{KeyBits: 100000}, ErrInvalid},
		{"long host", "", Options{Hosts: []string{strings.Repeat("a", 250)}}, ErrInvalid},
		{"control character", "", Options{Hosts: []string{"a\nb"}}, ErrInvalid},
		{"negative validity", "", Options{Validity: -time.Hour}, ErrInvalid},
		{"existing CA", existing, Options{KeyBits: 1024}, fs.ErrExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = t.TempDir()
			}
			if _, err := New(dir, tc.opts); !errors.Is(err, tc.want) {
				t.Errorf("New = %v, want %v", err, tc.want)
			}
			// Refused before anything is written, so that the corrected
			// call can use the same directory.
			if ents, err := os.ReadDir(dir); tc.want == ErrInvalid && (err != nil || len(ents) != 0) {
				t.Errorf("a refused New left %d files in its directory (%v)", len(ents), err)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(existing, "ca.key")); err != nil || string(b) != "precious" {
		t.Errorf("existing ca.key was touched: %q %v", b, err)
	}

	p := fastDevPKI(t, "ok.example.org")
	for _, name := range []string{"", "a/b", "ca", ".", strings.Repeat("b", 65), "tab\there"} {
		for issue, f := range map[string]func(string) error{"Issue": p.Issue, "IssueExpired": p.IssueExpired, "IssueRogue": p.IssueRogue} {
			if err := f(name); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q) = %v, want ErrInvalid", issue, name, err)
			}
		}
	}
}

func TestDevPKISettings(t *testing.T) {
	p := fastDevPKI(t, shapeHosts...)
	if err := p.IssueRogue("rogue.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := p.IssueExpired("old.example.org"); err != nil {
		t.Fatal(err)
	}
	s := p.Settings()
	if s.SSLDir != p.Dir || s.CACert != p.CACert || s.CRL != p.CRL {
		t.Errorf("paths %q %q %q, want the PKI's %q %q %q", s.SSLDir, s.CACert, s.CRL, p.Dir, p.CACert, p.CRL)
	}
	// Every certname with files in Dir, the rogue and expired ones too: a
	// test of their rejection needs a signer to load them.
	want := map[string]string{"shell." + ShortHostname(): shapeHosts[0]}
	for _, h := range append(slices.Clone(shapeHosts), "rogue.example.org", "old.example.org") {
		want[h] = h
	}
	if !maps.Equal(s.Certnames, want) {
		t.Errorf("certnames %v, want %v", s.Certnames, want)
	}
	s.Certnames["x"] = "y"
	if _, ok := p.Settings().Certnames["x"]; ok {
		t.Error("Settings shares its certnames map between calls")
	}
}

func TestDevPKIConcurrentIssue(t *testing.T) {
	p := fastDevPKI(t, "base.example.org")
	var wg sync.WaitGroup
	const n = 6
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("host%d.example.org", i)
			switch i % 3 {
			case 0:
				errs[i] = p.Issue(name)
			case 1:
				errs[i] = p.IssueExpired(name)
			case 2:
				errs[i] = p.IssueRogue(name)
			}
			_ = p.Settings()
		})
	}
	var revokeErr error
	wg.Go(func() { revokeErr = p.Revoke("base.example.org") })
	wg.Wait()
	if err := errors.Join(append(errs, revokeErr)...); err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for i := range n {
		name := fmt.Sprintf("host%d.example.org", i)
		s := devReadCert(t, filepath.Join(p.Dir, name+".crt")).SerialNumber.String()
		if serials[s] {
			t.Errorf("serial %s issued twice", s)
		}
		serials[s] = true
		if _, ok := p.Settings().Certnames[name]; !ok {
			t.Errorf("Settings lacks %s", name)
		}
	}
	if err := devVerifyHost(t, p, "host0.example.org", time.Now()); err != nil {
		t.Error(err)
	}
	if len(devReadCRL(t, p).RevokedCertificateEntries) != 1 {
		t.Error("concurrent Revoke lost")
	}
}

// TestDevPKIOpenSSL checks the files with the tool Python's stack is built
// on; the Go checks above run regardless.
func TestDevPKIOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl binary; the Go checks in the other DevPKI tests still ran")
	}
	p := fastDevPKI(t, "good.example.org", "bad.example.org")
	if err := p.Revoke("bad.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := p.IssueRogue("rogue.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := p.IssueExpired("old.example.org"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host string
		ok   bool
	}{
		{"good.example.org", true},
		{"bad.example.org", false},
		{"rogue.example.org", false},
		{"old.example.org", false},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			out, err := exec.Command(openssl, "verify", "-CAfile", p.CACert, "-crl_check", "-CRLfile", p.CRL,
				filepath.Join(p.Dir, tc.host+".crt")).CombinedOutput()
			if (err == nil) != tc.ok {
				t.Errorf("openssl verify ok=%v, want %v:\n%s", err == nil, tc.ok, out)
			}
		})
	}
	out, err := exec.Command(openssl, "rsa", "-check", "-noout", "-in", filepath.Join(p.Dir, "good.example.org.key")).CombinedOutput()
	if err != nil {
		t.Errorf("openssl cannot read the key: %v\n%s", err, out)
	}
}
