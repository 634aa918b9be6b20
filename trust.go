package gilmsg

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// trustStore holds the CA certificates and the CRL, loaded from files or
// https:// URLs as fedmsg allows. Each successful (re)load bumps the
// generation, which invalidates the validator's chain cache.
type trustStore struct {
	caLoc, crlLoc string
	client        *http.Client

	gen atomic.Uint64

	// checkedAt (Unix nanoseconds) is when the files were last looked at
	// for a rotation while everything validated.
	checkedAt atomic.Int64

	mu       sync.Mutex
	loaded   bool
	roots    *x509.CertPool
	crl      *crlSet
	err      error
	stamps   [2]fileStamp
	loadedAt time.Time
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	size    int64
	modTime time.Time
	missing bool
}

// urlReloadEvery bounds how often a URL is fetched again after a failure:
// a stream of forged messages must not turn into a stream of downloads.
const urlReloadEvery = 10 * time.Second

// fetchTimeout bounds one download of the CA or CRL; fetchAttempts is how
// many are tried (Python uses 3 retries).
const (
	fetchTimeout  = 10 * time.Second
	fetchAttempts = 3
)

func newTrustStore(caLoc, crlLoc string) *trustStore {
	return &trustStore{caLoc: caLoc, crlLoc: crlLoc, client: &http.Client{Timeout: fetchTimeout}}
}

func (t *trustStore) generation() uint64 { return t.gen.Load() }

// refreshEvery is how often the CA and CRL files are looked at (one stat
// each) while every message validates, so that a rotated CRL revokes a
// cached certificate within about a second.
const refreshEvery = time.Second

// refreshIfDue reloads changed files at most once per refreshEvery. URLs are
// only fetched again after a failure, as Python does.
func (t *trustStore) refreshIfDue(now time.Time) {
	last := t.checkedAt.Load()
	if now.UnixNano()-last < int64(refreshEvery) || !t.checkedAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if isURL(t.caLoc) || isURL(t.crlLoc) {
		return
	}
	t.get(true)
}

// get returns the current CA pool and CRL. With reload, it reads them again
// when they may have changed: a file whose size or time changed, or a URL
// not fetched for a while.
func (t *trustStore) get(reload bool) (uint64, *x509.CertPool, *crlSet, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.loaded || (reload && t.stale()) {
		t.load()
	}
	return t.gen.Load(), t.roots, t.crl, t.err
}

func (t *trustStore) stale() bool {
	if isURL(t.caLoc) || isURL(t.crlLoc) {
		return time.Since(t.loadedAt) >= urlReloadEvery
	}
	return t.currentStamps() != t.stamps
}

func (t *trustStore) currentStamps() [2]fileStamp {
	var s [2]fileStamp
	for i, loc := range []string{t.caLoc, t.crlLoc} {
		if loc == "" || isURL(loc) {
			continue
		}
		fi, err := os.Stat(loc)
		if err != nil {
			s[i].missing = true
			continue
		}
		s[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	return s
}

func (t *trustStore) load() {
	t.loaded = true
	t.loadedAt = time.Now()
	t.stamps = t.currentStamps()
	roots, cas, err := t.loadCA()
	var crl *crlSet
	if err == nil && t.crlLoc != "" {
		crl, err = t.loadCRL(cas)
	}
	if err != nil {
		t.roots, t.crl, t.err = nil, nil, err
	} else {
		t.roots, t.crl, t.err = roots, crl, nil
	}
	t.gen.Add(1)
}

func (t *trustStore) loadCA() (*x509.CertPool, []*x509.Certificate, error) {
	if t.caLoc == "" {
		return nil, nil, fmt.Errorf("ca_cert_location is not set")
	}
	data, err := t.read(t.caLoc)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	var cas []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("CA certificate %s: %w", t.caLoc, err)
		}
		pool.AddCert(c)
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, nil, fmt.Errorf("CA certificate %s: no PEM certificate", t.caLoc)
	}
	return pool, cas, nil
}

func (t *trustStore) loadCRL(cas []*x509.Certificate) (*crlSet, error) {
	data, err := t.read(t.crlLoc)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	set, err := newCRLSet(data, cas)
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", t.crlLoc, err)
	}
	return set, nil
}

func (t *trustStore) read(loc string) ([]byte, error) {
	if !isURL(loc) {
		return os.ReadFile(loc)
	}
	var err error
	for range fetchAttempts {
		var data []byte
		if data, err = t.fetch(loc); err == nil {
			return data, nil
		}
	}
	return nil, err
}

func (t *trustStore) fetch(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// A CA or CRL is small; refuse to buffer an endless body.
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

func isURL(loc string) bool { return strings.HasPrefix(loc, "https://") }
