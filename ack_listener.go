package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"
)

// ackListener is the bus's one subscription to the ACK topic; its
// goroutine routes each ACK to the publish waiting for it, by msg_id.
//
// It connects only where the recipients of the reliable publishes made so
// far can answer from (see [ackSources]), and grows as new recipients
// appear: the first publish to a recipient not covered yet has the
// listener's goroutine, which owns the sockets, open the missing endpoints,
// and waits until they are connected before it sends (listen, then send).
type ackListener struct {
	bus     *Bus
	sub     *Subscription
	sources *ackSources
	done    chan struct{}
	growing sync.WaitGroup // the grow goroutines

	mu      sync.Mutex
	closed  bool                 // no growth starts any more
	waiting map[string]*pending  // by msg_id
	added   map[string]*growth   // by address: the growth that opened it
	covered map[string][]*growth // by recipient: the growths it waits for
}

// pending is one reliable publish waiting for ACKs. Its fields are
// guarded by the listener's mutex.
type pending struct {
	recipients []string
	start      time.Time
	acked      map[string]time.Duration
	rejected   []RejectedAck // at most maxRejectedKept
	done       chan struct{}
}

// growth is a set of endpoints added to the listener at once; done is
// closed when they are connected, or the ready timeout has passed.
type growth struct {
	eps  []namedEndpoint
	done chan struct{}
}

// maxCoveredRecipients bounds the listener's memory of recipients: past
// it, what each one waits for is worked out again (the endpoints stay).
const maxCoveredRecipients = 4096

// ackListener starts the listener on first use, connected to where
// recipients can answer from, and then makes sure it covers recipients:
// it returns once every endpoint they can answer from is connected, or
// the ready timeout has passed, or ctx ends. An ACK sent before the
// listener is connected to its sender is lost.
func (b *Bus) ackListener(ctx context.Context, recipients []string) (*ackListener, error) {
	b.acksMu.Lock()
	if b.acksClosed {
		b.acksMu.Unlock()
		return nil, ErrClosed
	}
	l, st := b.acks, b.acksStart
	if l == nil && st == nil {
		st = &ackStart{done: make(chan struct{})}
		b.acksStart = st
		b.wg.Add(1)
		go b.startAckListener(st, recipients)
	}
	b.acksMu.Unlock()
	if l == nil {
		// The start runs on the bus's lifetime: a publish whose ctx ends
		// stops waiting for it, not the start itself, so the endpoints
		// are recorded as connected only once they are (or the ready
		// timeout has passed).
		select {
		case <-st.done:
		case <-ctx.Done():
			return nil, b.ctxErr(ctx)
		}
		if st.err != nil {
			return nil, st.err
		}
		l = st.l
	}
	if err := l.cover(ctx, recipients); err != nil {
		return nil, err
	}
	return l, nil
}

// ackStart is a start of the ACK listener under way; l and err are set
// before done is closed.
type ackStart struct {
	done chan struct{}
	l    *ackListener
	err  error
}

// startAckListener subscribes to the ACK topic where recipients can answer
// from and, once it has, runs the listener on this goroutine (counted in
// b.wg by the caller). A failure is given to the publishes waiting for
// st and forgotten, so that the next publish starts the listener again.
func (b *Bus) startAckListener(st *ackStart, recipients []string) {
	defer b.wg.Done()
	l, err := b.subscribeAcks(recipients)
	b.acksMu.Lock()
	if err == nil && b.acksClosed {
		l.sub.Close()
		l, err = nil, ErrClosed
	}
	b.acks, b.acksStart = l, nil
	st.l, st.err = l, err
	b.acksMu.Unlock()
	close(st.done)
	if l != nil {
		l.run()
	}
}

// subscribeAcks makes the listener, subscribed and connected where
// recipients can answer from (or the ready timeout has passed).
func (b *Bus) subscribeAcks(recipients []string) (*ackListener, error) {
	src := newAckSources(b)
	first := src.forAll(recipients)
	// An ACK's seq_id means nothing to the listener, and is not under
	// any signature: tracking it (WithoutReplay off) let one unsigned
	// message with seq_id 2^62 stall every reliable publish.
	opts := []SubscribeOption{WithoutValidation(), WithoutAck(), WithoutReplay(), WithDedupe(0)}
	sub, err := b.Subscribe(b.life, b.ackTopic, append(opts, fromNamedEndpoints(first))...)
	if errors.Is(err, ErrEndpoint) && len(first) < len(src.all) {
		// Not one of them could be used: every endpoint, as before.
		first = src.all
		sub, err = b.Subscribe(b.life, b.ackTopic, append(opts, fromNamedEndpoints(first))...)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (starting the ACK listener)", err)
	}
	l := &ackListener{bus: b, sub: sub, sources: src, done: make(chan struct{}),
		waiting: make(map[string]*pending), added: make(map[string]*growth),
		covered: make(map[string][]*growth)}
	// Subscribe waited for these.
	started := &growth{eps: first, done: make(chan struct{})}
	close(started.done)
	for _, ep := range first {
		l.added[ep.addr] = started
	}
	return l, nil
}

// fromNamedEndpoints is [WithEndpoints] keeping the endpoints' names, which
// messages then carry.
func fromNamedEndpoints(eps []namedEndpoint) SubscribeOption {
	return func(o *subOptions) { o.endpoints = slices.Clone(eps) }
}

// cover makes sure the listener is connected wherever recipients can
// answer from: it starts a growth for the endpoints no one has added yet,
// and waits for it and for the growths of others that it needs.
func (l *ackListener) cover(ctx context.Context, recipients []string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	var g *growth
	var waits []*growth
	for _, r := range recipients {
		deps, known := l.covered[r]
		if !known {
			if len(l.covered) >= maxCoveredRecipients {
				clear(l.covered)
			}
			for _, ep := range l.sources.forRecipient(r) {
				d := l.added[ep.addr]
				if d == nil {
					if g == nil {
						g = &growth{done: make(chan struct{})}
					}
					g.eps = append(g.eps, ep)
					l.added[ep.addr] = g
					d = g
				}
				if !slices.Contains(deps, d) {
					deps = append(deps, d)
				}
			}
		}
		// Forget the growths that are over: a covered recipient costs a
		// map lookup.
		deps = slices.DeleteFunc(deps, func(d *growth) bool { return isDone(d.done) })
		l.covered[r] = deps
		for _, d := range deps {
			if !slices.Contains(waits, d) {
				waits = append(waits, d)
			}
		}
	}
	if g != nil {
		l.growing.Add(1)
		go l.grow(g)
	}
	l.mu.Unlock()
	for _, d := range waits {
		select {
		case <-d.done:
		case <-ctx.Done():
			return l.bus.ctxErr(ctx)
		}
	}
	return nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// grow has the listener's goroutine open g's endpoints, and waits, bounded
// by the ready timeout as Subscribe's wait is, until they are connected.
// It runs on its own goroutine so that a publish whose ctx ends does not
// cut short the wait of the others that need g.
func (l *ackListener) grow(g *growth) {
	defer l.growing.Done()
	defer close(g.done)
	b := l.bus
	ctx, cancel := b.withClose(context.Background())
	defer cancel()
	mons, err := l.sub.addEndpoints(ctx, g.eps)
	if err != nil {
		return // closing
	}
	if n := waitAll(ctx, b.opts.readyTimeout, mons); n < len(g.eps) {
		b.log.Info("gilmsg: ACK listener grew before every endpoint connected",
			slog.Int("connected", n), slog.Int("endpoints", len(g.eps)))
	}
}

func (l *ackListener) run() {
	defer close(l.done)
	defer l.sub.Close()
	for {
		m, err := l.sub.Next(context.Background())
		if errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			// Malformed ACK frames are surfaced only with WithInvalidMessages,
			// which the listener does not set: this is a socket error.
			l.bus.log.Error("gilmsg: ACK listener", slog.Any("error", err))
			continue
		}
		l.bus.stats.acksReceived.Add(1)
		if reason := l.route(m); reason != "" {
			l.bus.stats.acksRejected.add(reason)
			l.bus.opts.hooks.ackRejected(reason)
			l.bus.log.Debug("gilmsg: ACK rejected", slog.String("reason", reason), untrusted.Attr("msg_id", m.MsgID))
		}
	}
}

// route counts m for the publish it acknowledges, and returns why it did
// not count otherwise.
func (l *ackListener) route(m *Message) string {
	if m.Topic != l.bus.ackTopic {
		return ackRejectTopic
	}
	payload, _ := m.Msg().(map[string]any)
	id, _ := payload["ack_msg_id"].(string)
	if id == "" {
		return ackRejectMalformed
	}
	l.mu.Lock()
	p := l.waiting[id]
	l.mu.Unlock()
	if p == nil {
		return ackRejectUnknownID
	}
	// Only ACKs for a waiting publish get the RSA verification: a flood
	// of junk costs a map lookup each.
	cn, err := l.bus.validator.identify(m.Envelope)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		reason := "invalid: " + string(ReasonOf(err))
		p.reject("", reason)
		return reason
	}
	if !slices.Contains(p.recipients, cn) {
		p.reject(cn, ackRejectNotRecipient)
		return ackRejectNotRecipient
	}
	if _, ok := p.acked[cn]; ok {
		return ackRejectDuplicate
	}
	p.acked[cn] = time.Since(p.start)
	l.bus.stats.acksMatched.Add(1)
	l.bus.opts.hooks.ackMatched()
	if len(p.acked) == len(p.recipients) {
		close(p.done)
	}
	return ""
}

func (l *ackListener) register(msgID string, recipients []string) *pending {
	p := &pending{recipients: recipients, start: time.Now(),
		acked: make(map[string]time.Duration, len(recipients)), done: make(chan struct{})}
	l.mu.Lock()
	l.waiting[msgID] = p
	l.mu.Unlock()
	return p
}

func (l *ackListener) unregister(msgID string) {
	l.mu.Lock()
	delete(l.waiting, msgID)
	l.mu.Unlock()
}

// acks lists the recipients that ACKed, in the order they were given.
func (l *ackListener) acks(p *pending) []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Ack
	for _, r := range p.recipients {
		if d, ok := p.acked[r]; ok {
			out = append(out, Ack{Recipient: r, Delay: d})
		}
	}
	return out
}

// missing lists the recipients of p that have not ACKed.
func (l *ackListener) missing(p *pending) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range p.recipients {
		if _, ok := p.acked[r]; !ok {
			out = append(out, r)
		}
	}
	return out
}

// reject keeps a refused ACK for p's AckTimeoutError, once per signer
// and reason; the caller holds l.mu.
func (p *pending) reject(signer, reason string) {
	r := RejectedAck{Signer: signer, Reason: reason}
	if len(p.rejected) < maxRejectedKept && !slices.Contains(p.rejected, r) {
		p.rejected = append(p.rejected, r)
	}
}

// timeoutError is the error of a reliable publish whose wait ended before
// every ACK came: by the ACK timeout, or by ctx, the caller's.
func (l *ackListener) timeoutError(ctx context.Context, p *pending, out *outgoing, timeout time.Duration) *AckTimeoutError {
	e := &AckTimeoutError{Topic: out.topic, MsgID: out.msgID, Timeout: timeout, Waited: time.Since(p.start),
		Acked: l.acks(p), Missing: l.missing(p), Err: context.DeadlineExceeded}
	if err := ctx.Err(); err != nil {
		e.Err, e.ctxEnded = err, true
	}
	l.mu.Lock()
	e.Rejected = slices.Clone(p.rejected)
	l.mu.Unlock()
	return e
}

func (l *ackListener) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.sub.Close()
	<-l.done
	l.growing.Wait()
}

// ackSources says where each recipient can answer from, read from the
// config when the listener starts (as the listener has always read it).
//
// A recipient is named by the validator: by the CN of its certificate,
// which fedmsg picks by the process's name (certnames[<name>], WIRE.md §4),
// or, with gpg, by its gpg_keys name, which fedmsg picks by host name
// (gpg_keys[<short hostname>], the end of "<service>.<host>" names). It
// publishes its ACK from its own endpoint, endpoints[<name>], or, as an
// active publisher, through the relay. So a recipient's sources are the
// endpoints of every name whose signer it is, plus relay_outbound's; a
// recipient that no name signs as (a typo, a process signing through
// cert_prefix under a name certnames does not list) gets every endpoint,
// which is what the listener always used.
type ackSources struct {
	all     []namedEndpoint            // every endpoint a subscription uses
	relays  []namedEndpoint            // relay_outbound
	signers map[string][]namedEndpoint // signer name → the endpoints of the names it signs as
}

func newAckSources(b *Bus) *ackSources {
	src := &ackSources{all: b.subscribeEndpoints(), signers: make(map[string][]namedEndpoint)}
	// Signers named as the validator names them, by the backends it
	// accepts.
	v := b.validator
	x509, gpg := slices.Contains(v.backends, "x509"), slices.Contains(v.backends, "gpg")
	for _, ep := range src.all {
		if ep.name == "relay_outbound" {
			src.relays = append(src.relays, ep)
			continue
		}
		var names []string
		if cn, ok := b.cfg.Certnames[ep.name]; ok && x509 {
			names = append(names, cn)
		}
		if gpg {
			names = append(names, gpgSignersOf(v.gpg.names, ep.name)...)
		}
		for _, n := range names {
			if !slices.Contains(src.signers[n], ep) {
				src.signers[n] = append(src.signers[n], ep)
			}
		}
	}
	return src
}

// forRecipient lists the endpoints r can answer from, relays included:
// every endpoint when no name signs as r.
func (a *ackSources) forRecipient(r string) []namedEndpoint {
	own := a.signers[r]
	if len(own) == 0 {
		return a.all
	}
	return append(slices.Clone(a.relays), own...)
}

// forAll lists, once each, the endpoints any of recipients can answer
// from.
func (a *ackSources) forAll(recipients []string) []namedEndpoint {
	var out []namedEndpoint
	seen := make(map[namedEndpoint]bool)
	for _, r := range recipients {
		for _, ep := range a.forRecipient(r) {
			if !seen[ep] {
				seen[ep] = true
				out = append(out, ep)
			}
		}
	}
	return out
}

// gpgSignersOf names, as the validator would, the gpg keys a process named
// name may sign with: gpg_keys[name], and gpg_keys[host] for a name
// "<service>.<host>" (fedmsg signs with gpg_keys[<short hostname>]).
func gpgSignersOf(names []gpgName, name string) []string {
	var out []string
	for _, n := range names {
		if n.name != name && !strings.HasSuffix(name, "."+n.name) {
			continue
		}
		// The validator names a key by the first name (sorted) that
		// designates it.
		for _, first := range names {
			if keyMatches(first.spec, n.spec) || keyMatches(n.spec, first.spec) {
				if !slices.Contains(out, first.name) {
					out = append(out, first.name)
				}
				break
			}
		}
	}
	return out
}
