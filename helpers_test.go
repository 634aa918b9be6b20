package gilmsg

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

// devPKI is the dev PKI's generation core with the Config that the public
// package devpki adds: that package imports the root, so the root's own
// tests cannot import it.
type devPKI struct{ *devpki.PKI }

func newDevPKI(dir string, opts devpki.Options) (*devPKI, error) {
	p, err := devpki.New(dir, opts)
	if err != nil {
		return nil, err
	}
	return &devPKI{p}, nil
}

// Config is devpki.PKI.Config: a local bus signed with this PKI, its
// endpoints left for the caller to fill.
func (p *devPKI) Config() *Config {
	s := p.Settings()
	c := DefaultConfig()
	c.TopicPrefix = "org.example"
	c.Environment = "dev"
	c.SSLDir, c.CACertLocation, c.CRLLocation = s.SSLDir, s.CACert, s.CRL
	c.SignMessages = true
	c.ValidateSignatures = true
	c.Endpoints = map[string][]string{}
	maps.Copy(c.Certnames, s.Certnames)
	if p.GPG != nil {
		configureDevGPG(c, p.GPG)
	}
	return c
}

// configureDevGPG is devpki.GPG.Configure: c validates with d's keys and
// names their signers.
func configureDevGPG(c *Config, d *devpki.GPG) {
	if !slices.Contains(c.CryptoValidateBackends, "gpg") {
		c.CryptoValidateBackends = append(slices.Clone(c.CryptoValidateBackends), "gpg")
	}
	c.GPGHome = d.Home
	if c.GPGHome == "" {
		c.GPGHome = d.KeyFile
	}
	c.GPGKeys = maps.Clone(d.Keys)
}

// testPKIHosts are issued once per test binary by the first testPKI call.
var testPKIHosts = []string{
	"publisher01.example.org",
	"consumer01.example.org",
	"consumer02.example.org",
	"consumer03.example.org",
	"relay01.example.org",
}

var sharedPKI struct {
	once sync.Once
	dir  string
	pki  *devPKI
	err  error

	mu     sync.Mutex // serialises on-demand issues so each host is issued once
	extras map[string]bool
}

// TestMain removes the shared PKI's directory, which outlives any one test
// and so cannot use t.TempDir.
func TestMain(m *testing.M) {
	code := m.Run()
	if sharedPKI.dir != "" {
		if err := os.RemoveAll(sharedPKI.dir); err != nil {
			fmt.Fprintln(os.Stderr, "removing shared test PKI:", err)
		}
	}
	os.Exit(code)
}

// testPKI returns a PKI shared by every test in the binary, holding
// testPKIHosts plus any hosts asked for (issued on first request), because
// RSA key generation is too slow to repeat in each test.
//
// Treat it as read-only: a test that revokes, or issues expired or rogue
// certificates under a name others use, must make its own with newDevPKI
// (KeyBits 1024 keeps that fast). Read the hosts from the argument list or
// from Config, not by mutating the returned value.
func testPKI(t testing.TB, hosts ...string) *devPKI {
	t.Helper()
	sharedPKI.once.Do(func() {
		sharedPKI.dir, sharedPKI.err = os.MkdirTemp("", "gilmsg-testpki-")
		if sharedPKI.err != nil {
			return
		}
		sharedPKI.pki, sharedPKI.err = newDevPKI(sharedPKI.dir, devpki.Options{Hosts: testPKIHosts})
		sharedPKI.extras = make(map[string]bool)
	})
	if sharedPKI.err != nil {
		t.Fatalf("shared test PKI: %v", sharedPKI.err)
	}
	sharedPKI.mu.Lock()
	defer sharedPKI.mu.Unlock()
	for _, h := range hosts {
		if slices.Contains(testPKIHosts, h) || sharedPKI.extras[h] {
			continue
		}
		if err := sharedPKI.pki.Issue(h); err != nil {
			t.Fatalf("shared test PKI: issuing %q: %v", h, err)
		}
		sharedPKI.extras[h] = true
	}
	return sharedPKI.pki
}
