package gilmsg

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// TrustError says that the CA certificate or the CRL could not be used:
// missing, unreadable, not what it should be, expired, or not downloaded.
// Every message then fails validation (reason "ca"), and a reliable
// publish, whose ACKs could not be judged, fails at once with it. It
// matches [ErrTrust] and the cause.
type TrustError struct {
	What     string // "CA certificate" or "CRL"
	Location string // the file or https:// URL
	Err      error
}

func (e *TrustError) Error() string { return "gilmsg: " + e.causeText() }

func (e *TrustError) causeText() string {
	if e.Location == "" {
		return e.What + ": " + causeText(e.Err)
	}
	return e.What + " " + e.Location + ": " + causeText(e.Err)
}

// Unwrap returns [ErrTrust] and the cause.
func (e *TrustError) Unwrap() []error { return []error{ErrTrust, e.Err} }

// trustStore holds the CA certificates and the CRL, loaded from files or
// https:// URLs as fedmsg allows. Each successful (re)load bumps the
// generation, which invalidates the validator's chain cache.
//
// A download is bounded (connect, TLS handshake, the whole download) and
// cancelled when the store is stopped (its bus closes) or when the caller
// of [trustStore.getCtx] gives up: no call waits on an unanswering server
// for longer than fetchTotal, and Close never waits on one.
type trustStore struct {
	caLoc, crlLoc string
	client        *http.Client
	fetchTotal    time.Duration // bounds one load's downloads, retries included

	ctx  context.Context // cancelled by stop
	stop context.CancelFunc

	gen atomic.Uint64

	// checkedAt (Unix nanoseconds) is when the files were last looked at
	// for a rotation while everything validated.
	checkedAt atomic.Int64
	// usable is set while the last load succeeded.
	usable atomic.Bool

	// lock is a mutex that a caller can stop waiting for: a load may be
	// downloading while it is held.
	lock     chan struct{}
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

// Bounds of a download of the CA or CRL. fetchAttempts is how many are
// tried (Python uses 3 retries), all within fetchTotal.
const (
	fetchConnectTimeout = 5 * time.Second
	fetchTLSTimeout     = 5 * time.Second
	fetchTotal          = 10 * time.Second
	fetchAttempts       = 3
)

func newTrustStore(caLoc, crlLoc string) *trustStore {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: fetchConnectTimeout}).DialContext,
		TLSHandshakeTimeout:   fetchTLSTimeout,
		ResponseHeaderTimeout: fetchTotal,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
	}
	ctx, stop := context.WithCancel(context.Background())
	return &trustStore{
		caLoc: caLoc, crlLoc: crlLoc,
		client:     &http.Client{Transport: transport, Timeout: fetchTotal},
		fetchTotal: fetchTotal,
		ctx:        ctx, stop: stop,
		lock: make(chan struct{}, 1),
	}
}

// close cancels any download and makes later ones fail at once.
func (t *trustStore) close() {
	t.stop()
	t.client.CloseIdleConnections()
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

// filesUsable reports whether the CA and CRL come from files (no URL) and
// their last load succeeded.
func (t *trustStore) filesUsable() bool {
	return t.usable.Load() && !isURL(t.caLoc) && !isURL(t.crlLoc)
}

// get returns the current CA pool and CRL. With reload, it reads them again
// when they may have changed: a file whose size or time changed, or a URL
// not fetched for a while.
func (t *trustStore) get(reload bool) (uint64, *x509.CertPool, *crlSet, error) {
	return t.getCtx(t.ctx, reload)
}

// getCtx is get bounded by ctx too: waiting for another load, or
// downloading, ends when ctx does, with ctx's error naming what was being
// loaded.
func (t *trustStore) getCtx(ctx context.Context, reload bool) (uint64, *x509.CertPool, *crlSet, error) {
	select {
	case t.lock <- struct{}{}:
	case <-ctx.Done():
		return t.gen.Load(), nil, nil, t.wrapLoadErr(ctx.Err())
	case <-t.ctx.Done():
		return t.gen.Load(), nil, nil, t.wrapLoadErr(ErrClosed)
	}
	defer func() { <-t.lock }()
	if !t.loaded || (reload && t.stale()) {
		if err := t.load(ctx); err != nil {
			return t.gen.Load(), nil, nil, err
		}
	}
	return t.gen.Load(), t.roots, t.crl, t.err
}

// wrapLoadErr words a load that did not happen: the locations it was for.
func (t *trustStore) wrapLoadErr(err error) error {
	loc := t.caLoc
	if t.crlLoc != "" {
		loc += " and " + t.crlLoc
	}
	return &TrustError{Location: loc, What: "CA certificate and CRL", Err: err}
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

// load reads the CA and the CRL. A load that the caller's ctx ended is not
// kept: the store stays as it was, and the caller gets the error.
func (t *trustStore) load(ctx context.Context) error {
	// One load's downloads, retries included, within fetchTotal, ended
	// early by the caller or by close.
	fctx, cancel := context.WithTimeout(ctx, t.fetchTotal)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()

	stamps := t.currentStamps()
	roots, cas, err := t.loadCA(fctx)
	var crl *crlSet
	if err == nil && t.crlLoc != "" {
		crl, err = t.loadCRL(fctx, cas)
	}
	if err != nil && ctx.Err() != nil && t.ctx.Err() == nil {
		return err
	}
	t.loaded = true
	t.loadedAt = time.Now()
	t.stamps = stamps
	if err != nil {
		t.roots, t.crl, t.err = nil, nil, err
	} else {
		t.roots, t.crl, t.err = roots, crl, nil
	}
	t.usable.Store(err == nil)
	t.gen.Add(1)
	return nil
}

func (t *trustStore) loadCA(ctx context.Context) (*x509.CertPool, []*x509.Certificate, error) {
	caErr := func(err error) error { return &TrustError{Location: t.caLoc, What: "CA certificate", Err: err} }
	if t.caLoc == "" {
		return nil, nil, &TrustError{What: "CA certificate", Err: errors.New("ca_cert_location is not set")}
	}
	data, err := t.read(ctx, t.caLoc)
	if err != nil {
		return nil, nil, caErr(err)
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
			return nil, nil, caErr(err)
		}
		pool.AddCert(c)
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, nil, caErr(errors.New("no PEM certificate in it"))
	}
	return pool, cas, nil
}

func (t *trustStore) loadCRL(ctx context.Context, cas []*x509.Certificate) (*crlSet, error) {
	crlErr := func(err error) error { return &TrustError{Location: t.crlLoc, What: "CRL", Err: err} }
	data, err := t.read(ctx, t.crlLoc)
	if err != nil {
		return nil, crlErr(err)
	}
	set, err := newCRLSet(data, cas)
	if err != nil {
		return nil, crlErr(err)
	}
	// An expired CRL makes OpenSSL, hence Python, refuse every
	// certificate: say so once, here, rather than per message.
	if next := set.list.NextUpdate; !next.IsZero() && time.Now().After(next) {
		return nil, crlErr(fmt.Errorf("expired at %s", next.UTC().Format(time.RFC3339)))
	}
	return set, nil
}

func (t *trustStore) read(ctx context.Context, loc string) ([]byte, error) {
	if !isURL(loc) {
		data, err := os.ReadFile(loc)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is the TrustError's Location
			}
			return nil, err
		}
		return data, nil
	}
	var err error
	for range fetchAttempts {
		var data []byte
		if data, err = t.fetch(ctx, loc); err == nil {
			return data, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func (t *trustStore) fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the TrustError's Location
		}
		if t.ctx.Err() != nil {
			err = ErrClosed
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	// A CA or CRL is small; refuse to buffer an endless body.
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

func isURL(loc string) bool { return strings.HasPrefix(loc, "https://") }
