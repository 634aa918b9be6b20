package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// silentServer accepts TCP connections and never answers, not even the TLS
// handshake: the https:// CA of the failure review. It returns its URL
// and the number of connections accepted so far.
func silentServer(t *testing.T) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "https://" + ln.Addr().String() + "/ca.crt", accepted
}

// awaitResult waits, with a generous deadline, for a call running in a
// goroutine; hanging is the failure.
func awaitResult(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("%s hangs", what)
		return nil
	}
}

// A download from a server that never answers ends when the caller's
// context does, and the error names the URL.
func TestTrustFetchCancelledByCaller(t *testing.T) {
	url, accepted := silentServer(t)
	cfg := DefaultConfig()
	cfg.CACertLocation = url
	val := NewValidator(cfg)
	val.trust.fetchTotal = 10 * time.Minute // only the caller may end it
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- val.CheckTrust(ctx) }()
	waitFor(t, "the download to connect", func() bool { return accepted.Load() > 0 })
	cancel()
	err := awaitResult(t, "CheckTrust after its context was cancelled", res)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrTrust) || !strings.Contains(err.Error(), url) {
		t.Errorf("error %v: want context.Canceled and ErrTrust, naming %s", err, url)
	}
	// The interrupted load is not kept: the next caller tries again.
	if val.trust.loaded {
		t.Error("a load the caller cancelled was kept")
	}
}

// hangingTLSServer is an httptest TLS server that completes the handshake,
// reads the request and never answers it. It returns the URL and points
// val's downloads (keeping their bounds) at its certificate.
func hangingTLSServer(t *testing.T, val *Validator) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only the test's end releases it: a handler that returned
		// early would answer 200 with an empty body, which is another
		// case (a CA that is not PEM), not a server that never answers.
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: srv.Close waits for handlers
	tr := val.trust.client.Transport.(*http.Transport)
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	return srv.URL + "/ca.crt"
}

// Without a caller's deadline, the store's own bound ends the download,
// whether the server never finishes the TLS handshake or never answers the
// request; the error names the URL.
func TestTrustFetchBounded(t *testing.T) {
	for _, server := range []string{"silent TCP", "TLS, no answer"} {
		t.Run(server, func(t *testing.T) {
			cfg := DefaultConfig()
			val := NewValidator(cfg)
			var url string
			if server == "silent TCP" {
				url, _ = silentServer(t)
			} else {
				url = hangingTLSServer(t, val)
			}
			val.trust.caLoc = url
			val.trust.fetchTotal = 200 * time.Millisecond
			res := make(chan error, 1)
			go func() { res <- val.CheckTrust(context.Background()) }()
			err := awaitResult(t, "CheckTrust with a bounded download", res)
			if !errors.Is(err, ErrTrust) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), url) {
				t.Errorf("error %v: want ErrTrust and a deadline, naming %s", err, url)
			}
			// Validation says the same, with reason "ca".
			if _, err := validateBody(val, []byte(loadVectors(t, "vectors.jsonl")[0].Body)); ReasonOf(err) != ReasonCA || !strings.Contains(err.Error(), url) ||
				!errors.Is(err, ErrTrust) || !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("validation: %v, want reason ca naming %s, matching ErrTrust and ErrInvalidSignature", err, url)
			}
		})
	}
}

// Close does not wait on a download: a reliable publish blocked on an
// unanswering CA is released, and so is Close, long before the download's
// own bound.
func TestCloseDoesNotWaitOnFetch(t *testing.T) {
	url, accepted := silentServer(t)
	cfg := DefaultConfig()
	cfg.Name = "pub"
	cfg.Endpoints = map[string][]string{"pub": {"tcp://127.0.0.1:*"}}
	cfg.CACertLocation = url
	bus, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bus.validator.trust.fetchTotal = 10 * time.Minute
	published := make(chan error, 1)
	go func() {
		_, err := bus.Publish(context.Background(), "x", nil, WithRecipients("b"), WithAckTimeout(10*time.Minute))
		published <- err
	}()
	waitFor(t, "the download to connect", func() bool { return accepted.Load() > 0 })
	closed := make(chan error, 1)
	go func() { closed <- bus.Close() }()
	if err := awaitResult(t, "Close during a download", closed); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := awaitResult(t, "a publish blocked on a download, once closed", published); !errors.Is(err, ErrClosed) {
		t.Errorf("publish: %v, want ErrClosed", err)
	}
}

// Trust problems at a reliable publisher are reported as such, naming the
// file or URL and what is wrong, not as missing ACKs.
func TestReliablePublishReportsTrustProblems(t *testing.T) {
	pki := copyPKI(t)
	garbage := filepath.Join(pki, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a PEM file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	expiredCRL, err := filepath.Abs("testdata/crl-v1/crl-v1-expired.pem")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, ca, crl string
		want          []string
	}{
		{"missing CA", filepath.Join(pki, "missing.crt"), "", []string{"CA certificate", "missing.crt", "no such file"}},
		{"garbage CA", garbage, "", []string{"CA certificate", garbage, "no PEM certificate"}},
		{"missing CRL", filepath.Join(pki, "ca.crt"), filepath.Join(pki, "missing.pem"), []string{"CRL", "missing.pem", "no such file"}},
		{"garbage CRL", filepath.Join(pki, "ca.crt"), garbage, []string{"CRL", garbage}},
		{"expired CRL", filepath.Join(pki, "ca.crt"), expiredCRL, []string{"CRL", expiredCRL, "expired at 2021-01-01"}},
		{"CA URL not found", srv.URL + "/ca.crt", "", []string{"CA certificate", srv.URL + "/ca.crt", "404"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Name = "pub"
			cfg.Endpoints = map[string][]string{"pub": {"tcp://127.0.0.1:*"}}
			cfg.CACertLocation, cfg.CRLLocation = tc.ca, tc.crl
			bus, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			bus.validator.trust.client = srv.Client()
			_, err = bus.Publish(context.Background(), "x", nil, WithRecipients("b"), WithAckTimeout(time.Minute))
			if !errors.Is(err, ErrTrust) || errors.Is(err, ErrAckTimeout) {
				t.Fatalf("publish: %v, want ErrTrust and no ACK timeout", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// CheckTrust looks at files that loaded only as often as validation does,
// and reports one that broke at its next look.
func TestCheckTrustNoticesBrokenCA(t *testing.T) {
	dir := copyPKI(t)
	val := NewValidator(vectorsConfig(t, dir))
	if err := val.CheckTrust(context.Background()); err != nil {
		t.Fatalf("CheckTrust: %v", err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("not a PEM file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute) // visible to a stat within one clock tick
	if err := os.Chtimes(ca, future, future); err != nil {
		t.Fatal(err)
	}
	val.trust.checkedAt.Store(0) // the second has passed
	err := val.CheckTrust(context.Background())
	if !errors.Is(err, ErrTrust) || !strings.Contains(err.Error(), ca) {
		t.Fatalf("CheckTrust after the CA broke: %v, want ErrTrust naming %s", err, ca)
	}
}

// A message whose validation the bus's Close cut short, its CA still
// downloading, was not judged: Next returns ErrClosed, and nothing is
// counted or reported as invalid.
func TestCloseDuringValidationIsNotInvalid(t *testing.T) {
	n := newTestNet(t)
	url, accepted := silentServer(t)
	pub := n.start("publisher01.example.org")
	n.mutate = func(c *Config) { c.CACertLocation = url }
	sub := n.start("")
	sub.validator.trust.fetchTotal = 10 * time.Minute
	ctx := ctxT(t)
	s, err := sub.Subscribe(ctx, "", WithEndpoints(pub.Endpoint()), WithInvalidMessages())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "x", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	next := make(chan error, 1)
	go func() {
		m, err := s.Next(context.Background())
		if m != nil {
			err = fmt.Errorf("yielded %s (invalid: %v)", m.MsgID, err)
		}
		next <- err
	}()
	waitFor(t, "the CA download to connect", func() bool { return accepted.Load() > 0 })
	sub.Close()
	if err := awaitResult(t, "Next once the bus closed", next); !errors.Is(err, ErrClosed) {
		t.Errorf("Next: %v, want ErrClosed", err)
	}
	if inv := sub.Stats().Invalid; len(inv) != 0 {
		t.Errorf("counted invalid: %v", inv)
	}
}
