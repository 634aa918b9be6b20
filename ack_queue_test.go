package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// signGate holds every ACK at the point where it is about to be signed
// until released, and counts how many wait there at once.
type signGate struct {
	release chan struct{}
	once    sync.Once
	in, max atomic.Int64
	fail    func(msgID string) error // when set, the ACK's error
}

func newSignGate(t *testing.T) *signGate {
	g := &signGate{release: make(chan struct{})}
	t.Cleanup(g.open) // before the buses close: nobody stays held
	return g
}

func (g *signGate) open() { g.once.Do(func() { close(g.release) }) }

func (g *signGate) option() Option {
	return func(o *options) {
		o.ackHook = func(id string) error {
			if g.fail != nil {
				return g.fail(id)
			}
			n := g.in.Add(1)
			for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
			}
			<-g.release
			g.in.Add(-1)
			return nil
		}
	}
}

type readResult struct {
	m   *Message
	err error
}

// readAll reads sub from a goroutine until the test ends; gate, which
// may hold the reader (an ACK signed in Next), is opened first.
func readAll(t *testing.T, sub *Subscription, gate *signGate) <-chan readResult {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan readResult, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sub.Next(ctx)
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			ch <- readResult{m, err}
		}
	}()
	t.Cleanup(func() { gate.open(); cancel(); sub.Close(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan readResult, what string) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
	return readResult{}
}

// readN takes n messages from msgs, failing on an error.
func readN(t *testing.T, msgs <-chan readResult, n int) []*Message {
	t.Helper()
	out := make([]*Message, n)
	for i := range out {
		r := next(t, msgs, "message")
		if r.err != nil || r.m == nil {
			t.Fatalf("Next %d: %v", i, r.err)
		}
		out[i] = r.m
	}
	return out
}

// publishN starts n reliable publishes to c1, their msg_ids made of id.
func publishN(t *testing.T, pub *Bus, n int, id func(i int) string) []*PubFuture {
	t.Helper()
	fs := make([]*PubFuture, n)
	for i := range fs {
		var err error
		fs[i], err = pub.PublishAsync(ctxT(t), "job", map[string]any{"n": i},
			WithRecipients(c1), WithAckTimeout(20*time.Second), WithMsgID(id(i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func msgID(i int) string { return fmt.Sprintf("2026-ackq-%04d", i) }

// gatedConsumer starts a publisher and a consumer, c1, whose ACKs wait
// for gate to be signed, with a subscription of c1 (given opts) read by
// readAll and the publisher seeing it.
func gatedConsumer(t *testing.T, opts ...SubscribeOption) (pub, cons *Bus, sub *Subscription, gate *signGate, msgs <-chan readResult) {
	t.Helper()
	net := newTestNet(t)
	pub = net.start(pubCN)
	gate = newSignGate(t)
	cons = net.start(c1, gate.option())
	sub, err := cons.Subscribe(ctxT(t), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	msgs = readAll(t, sub, gate)
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	return pub, cons, sub, gate, msgs
}

func waitAcked(t *testing.T, fs []*PubFuture) {
	t.Helper()
	for i, f := range fs {
		r, err := f.Result()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if got := hostsOf(r.Acks); !sameSet(got, []string{c1}) {
			t.Fatalf("publish %d: ACKs from %v", i, got)
		}
	}
}

// TestAckSignedOffReader: a subscription that ACKs on its own yields the
// next messages while the ACKs of those before are still being signed,
// and signs them on every core at once. Before the ACK queue, Next signed
// each ACK itself: it could not return the first message while that
// signature was held.
func TestAckSignedOffReader(t *testing.T) {
	const n = 4
	pub, cons, _, gate, msgs := gatedConsumer(t)
	fs := publishN(t, pub, n, msgID)
	readN(t, msgs, n) // each while the ACKs before it are held
	signers := int64(min(n, runtime.GOMAXPROCS(0)))
	waitFor(t, "ACKs signed at once", func() bool { return gate.in.Load() >= signers })
	if got := gate.max.Load(); got > int64(runtime.GOMAXPROCS(0)) {
		t.Errorf("%d ACKs signed at once, more than GOMAXPROCS (%d)", got, runtime.GOMAXPROCS(0))
	}
	gate.open()
	waitAcked(t, fs)
	// Counted just after the send, which the publisher may see first.
	waitFor(t, "the ACKs counted", func() bool { return cons.Stats().AcksSent >= n })
	if s := cons.Stats(); s.AckErrors != 0 {
		t.Errorf("AckErrors %d", s.AckErrors)
	}
}

// TestAckQueueBackPressure: while the signers are held, Next reads on
// only until the queue is full (here by its bound in bytes: msg_ids of
// 400 kB), then waits for room instead of queueing without bound.
func TestAckQueueBackPressure(t *testing.T) {
	const n, fit = 4, 3 // 3 × 400 kB reach ackQueueBytes
	pub, _, sub, gate, msgs := gatedConsumer(t)
	big := func(i int) string { return msgID(i) + strings.Repeat("x", 400<<10) }
	fs := publishN(t, pub, n, big)
	for i := range fit {
		if r := next(t, msgs, "message before the queue is full"); r.err != nil {
			t.Fatalf("Next %d: %v", i, r.err)
		}
	}
	waitFor(t, "Next to wait for room", func() bool { return sub.acks.waits.Load() > 0 })
	select {
	case r := <-msgs:
		t.Fatalf("Next yielded past a full ACK queue: %v %v", r.m != nil, r.err)
	default:
	}
	if q := sub.acks.bytes.Load(); q < ackQueueBytes || q > ackQueueBytes+int64(len(big(0))) {
		t.Errorf("%d bytes queued, want the bound (%d) plus at most one msg_id", q, ackQueueBytes)
	}
	gate.open()
	if r := next(t, msgs, "message once the signers made room"); r.err != nil {
		t.Fatal(r.err)
	}
	waitAcked(t, fs)
}

// TestCloseSendsDueAcks: closing a subscription sends the ACKs of the
// messages it has yielded, even those still waiting for a signer.
func TestCloseSendsDueAcks(t *testing.T) {
	const n = 6
	pub, cons, sub, gate, msgs := gatedConsumer(t)
	fs := publishN(t, pub, n, msgID)
	readN(t, msgs, n)
	closed := make(chan struct{})
	go func() { sub.Close(); close(closed) }()
	gate.open()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if s := cons.Stats(); s.AcksSent < n || s.AckErrors != 0 {
		t.Errorf("after Close: AcksSent %d, AckErrors %d; want ≥ %d, 0", s.AcksSent, s.AckErrors, n)
	}
	// Nothing of the subscription sends any more: the ACKs that reach
	// the publishes left before Close returned.
	waitAcked(t, fs)
}

// TestAckErrorReturned: an ACK that fails after its message was yielded
// comes back from the next Next, even one already waiting for input, is
// counted, and does not stop the subscription.
func TestAckErrorReturned(t *testing.T) {
	errSign := errors.New("injected signing failure")
	pub, cons, _, gate, msgs := gatedConsumer(t)
	gate.fail = func(id string) error {
		if id == msgID(0) {
			return errSign
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failed, err := pub.PublishAsync(ctx, "job", nil, WithRecipients(c1), WithAckTimeout(20*time.Second), WithMsgID(msgID(0)))
	if err != nil {
		t.Fatal(err)
	}
	if r := next(t, msgs, "message"); r.err != nil || r.m == nil || r.m.MsgID != msgID(0) {
		t.Fatalf("Next: %v", r.err)
	}
	r := next(t, msgs, "ACK error")
	if r.m != nil || !errors.Is(r.err, errSign) || !strings.Contains(r.err.Error(), msgID(0)) {
		t.Fatalf("Next: %v, %v; want nil and the ACK's error naming its msg_id", r.m, r.err)
	}
	if s := cons.Stats(); s.AckErrors == 0 {
		t.Error("AckErrors not counted")
	}
	cancel()
	failed.Err()
	fs := publishN(t, pub, 1, func(int) string { return msgID(1) })
	if r := next(t, msgs, "message after the failure"); r.err != nil {
		t.Fatal(r.err)
	}
	waitAcked(t, fs)
}

// TestBusCloseWaitsForSubscriptionClose: a Bus.Close that comes while the
// subscription's own Close is sending the ACKs due (a Tail whose ctx
// ended, and the program closing its bus) waits for them: it closed the
// publisher under them, and the ACKs of messages already yielded were
// lost.
func TestBusCloseWaitsForSubscriptionClose(t *testing.T) {
	const n = 4
	net := newTestNet(t)
	pub := net.start(pubCN)
	var cons *Bus
	var once sync.Once
	hold := func(string) error {
		// The ACKs wait for the bus to close, then for its publisher to
		// be closed under them (for a while: after that, they go anyway).
		<-cons.closed
		once.Do(func() {
			for start := time.Now(); time.Since(start) < time.Second; time.Sleep(time.Millisecond) {
				cons.pub.mu.Lock()
				closed := cons.pub.closed
				cons.pub.mu.Unlock()
				if closed {
					return
				}
			}
		})
		return nil
	}
	cons = net.start(c1, func(o *options) { o.ackHook = hold })
	sub, err := cons.Subscribe(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	fs := publishN(t, pub, n, msgID)
	for i := 0; i < n; {
		m, err := sub.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if m.Topic == pub.FullTopic("", "job") {
			i++
		}
	}
	closed := make(chan struct{})
	go func() { sub.Close(); close(closed) }()
	waitFor(t, "the subscription to close", sub.closed.Load)
	cons.Close()
	<-closed
	if s := cons.Stats(); s.AckErrors != 0 || s.AcksSent < n {
		t.Fatalf("AcksSent %d, AckErrors %d: the bus closed under its subscription's ACKs", s.AcksSent, s.AckErrors)
	}
	waitAcked(t, fs)
}

// TestCloseRacingBusClose: a subscription closed while its bus closes
// too still sends the ACKs due, even before the bus's post-init wait has
// passed (none of its ACKs sent yet): the ACKs' waits end with the
// socket, not the bus. Before, the closing bus ended that wait, and 6 of
// 6 ACKs were lost.
func TestCloseRacingBusClose(t *testing.T) {
	const n = 6
	pub, cons, sub, gate, msgs := gatedConsumer(t)
	fs := publishN(t, pub, n, msgID)
	readN(t, msgs, n)
	var wg sync.WaitGroup
	for _, c := range []func() error{sub.Close, cons.Close} {
		wg.Add(1)
		go func() { defer wg.Done(); c() }()
	}
	gate.open()
	closed := make(chan struct{})
	go func() { wg.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if s := cons.Stats(); s.AcksSent < n || s.AckErrors != 0 {
		t.Errorf("AcksSent %d, AckErrors %d; want ≥ %d, 0", s.AcksSent, s.AckErrors, n)
	}
	waitAcked(t, fs)
}

// TestAckSignedOffReaderWithRecovery: with replay_endpoints, every
// message that carries a seq_id goes through the subscription's recovery
// queue; their ACKs too are signed off the reader. Before, that path
// signed each in Next.
func TestAckSignedOffReaderWithRecovery(t *testing.T) {
	const n = 4
	pki := testPKI(t)
	signer, err := LoadSigner(pki.Dir, testPKIHosts[0])
	if err != nil {
		t.Fatal(err)
	}
	signed := func(seq int64) []byte {
		f := map[string]any{"topic": "org.example.dev.svc.x", "msg": map[string]any{"n": seq}, "msg_id": fmt.Sprint("id-", seq),
			"seq_id": seq, "timestamp": 1700000000, "i": 1, "username": "u", "gilmsg_version": ProtocolVersion}
		if err := signer.Sign(f); err != nil {
			t.Fatal(err)
		}
		b, err := MarshalCanonical(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srv := startFakeReplay(t, "")
	pub := newSeqPub(t)
	cfg := pki.Config()
	cfg.Name = testPKIHosts[1]
	cfg.Endpoints = map[string][]string{"svc": {pub.addr}, cfg.Name: {"tcp://127.0.0.1:*"}}
	cfg.ReplayEndpoints = map[string]string{"svc": srv.addr}
	gate := newSignGate(t)
	b, err := New(cfg, gate.option(), WithoutPostInitWait())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // after readAll's, which opens the gate
	sub, err := b.Subscribe(ctxT(t), "org.example.dev.svc")
	if err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, sub, gate)
	pub.waitSubscribed(t)
	for seq := range int64(n) {
		pub.send(t, signed(seq+1))
	}
	for i := range n {
		r := next(t, msgs, "message while the ACKs before it are held")
		if r.err != nil || r.m == nil {
			t.Fatalf("Next %d: %v", i, r.err)
		}
		if seq, _ := r.m.SeqID(); seq != int64(i+1) {
			t.Fatalf("Next %d: seq_id %d", i, seq)
		}
	}
	signers := int64(min(n, runtime.GOMAXPROCS(0)))
	waitFor(t, "ACKs signed at once", func() bool { return gate.in.Load() >= signers })
	gate.open()
	waitFor(t, "the ACKs sent", func() bool { return b.Stats().AcksSent >= n })
}
