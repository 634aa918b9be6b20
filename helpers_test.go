package gilmsg

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
)

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
	pki  *DevPKI
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
// certificates under a name others use, must make its own with NewDevPKI
// (KeyBits 1024 keeps that fast). Read the hosts from the argument list or
// from Config, not by mutating the returned value.
func testPKI(t testing.TB, hosts ...string) *DevPKI {
	t.Helper()
	sharedPKI.once.Do(func() {
		sharedPKI.dir, sharedPKI.err = os.MkdirTemp("", "gilmsg-testpki-")
		if sharedPKI.err != nil {
			return
		}
		sharedPKI.pki, sharedPKI.err = NewDevPKI(sharedPKI.dir, DevPKIOptions{Hosts: testPKIHosts})
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
