package gilmsg

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The tests of this file hold Message.AckAsync, and RunConsumers and
// Bus.Close that use the ACK queue, to their promises. The oracle is the
// publisher's own verdict (ACKed or not) and the count of ACKs held at
// the signing gate, never a time.

// needCores skips a test of signing on several cores where there is one.
func needCores(t *testing.T) int64 {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS ≥ 2: it counts ACKs signed at once")
	}
	return int64(runtime.GOMAXPROCS(0))
}

// TestAckAsyncSignedOffCaller: with WithManualAck, AckAsync returns while
// the ACK is still to be signed, and the ACKs of several messages are
// signed at once, on every core.
func TestAckAsyncSignedOffCaller(t *testing.T) {
	const n = 4
	cores := needCores(t)
	pub, cons, _, gate, msgs := gatedConsumer(t, WithManualAck())
	fs := publishN(t, pub, n, msgID)
	for i, m := range readN(t, msgs, n) {
		if err := m.AckAsync(ctxT(t)); err != nil {
			t.Fatalf("AckAsync %d: %v", i, err)
		}
	}
	waitFor(t, "ACKs signed at once", func() bool { return gate.in.Load() >= min(n, cores) })
	if got := gate.max.Load(); got > cores {
		t.Errorf("%d ACKs signed at once, more than GOMAXPROCS (%d)", got, cores)
	}
	gate.open()
	waitAcked(t, fs)
	waitFor(t, "the ACKs counted", func() bool { return cons.Stats().AcksSent >= n })
	if s := cons.Stats(); s.AckErrors != 0 {
		t.Errorf("AckErrors %d", s.AckErrors)
	}
}

// TestAckAsyncWaitsForRoom: AckAsync calls from many goroutines share the
// queue's bound (here its bytes: msg_ids of 400 kB, 3 fit); the others
// wait for room, a wait whose ctx ends returns its error and counts,
// and every waiter is woken when the signers make room.
func TestAckAsyncWaitsForRoom(t *testing.T) {
	const n, fit = 6, 3
	pub, cons, sub, gate, msgs := gatedConsumer(t, WithManualAck())
	big := func(i int) string { return msgID(i) + strings.Repeat("x", 400<<10) }
	fs := publishN(t, pub, n, big)
	ms := readN(t, msgs, n) // Next does not wait: the application ACKs
	var returned atomic.Int64
	errs := make(chan error, n)
	for _, m := range ms {
		go func() {
			err := m.AckAsync(ctxT(t))
			returned.Add(1)
			errs <- err
		}()
	}
	waitFor(t, "the queue to fill", func() bool { return returned.Load() == fit && sub.acks.waits.Load() > 0 })
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ms[0].AckAsync(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("AckAsync on a full queue with its ctx ended: %v, want context.Canceled", err)
	}
	if got := returned.Load(); got != fit {
		t.Fatalf("%d AckAsync returned while the queue held %d", got, fit)
	}
	if q := sub.acks.bytes.Load(); q < ackQueueBytes || q > ackQueueBytes+int64(len(big(0))) {
		t.Errorf("%d bytes queued, want the bound (%d) plus at most one msg_id", q, ackQueueBytes)
	}
	gate.open()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("AckAsync: %v", err)
		}
	}
	waitAcked(t, fs)
	if s := cons.Stats(); s.AckErrors != 1 {
		t.Errorf("AckErrors %d, want 1: the ACK whose ctx ended", s.AckErrors)
	}
}

// TestAckAsyncClose: an AckAsync waiting for room when the subscription
// closes returns ErrClosed, as does one after; Close still sends the ACKs
// already queued.
func TestAckAsyncClose(t *testing.T) {
	const n, fit = 4, 3
	pub, cons, sub, gate, msgs := gatedConsumer(t, WithManualAck())
	big := func(i int) string { return msgID(i) + strings.Repeat("x", 400<<10) }
	fs := publishN(t, pub, n, big)
	ms := readN(t, msgs, n)
	for _, m := range ms[:fit] {
		if err := m.AckAsync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	waiting := make(chan error, 1)
	go func() { waiting <- ms[fit].AckAsync(ctxT(t)) }()
	waitFor(t, "AckAsync to wait for room", func() bool { return sub.acks.waits.Load() > 0 })
	closed := make(chan struct{})
	go func() { sub.Close(); close(closed) }()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("AckAsync waiting when the subscription closed: %v, want ErrClosed", err)
	}
	gate.open()
	<-closed
	if err := ms[0].AckAsync(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("AckAsync after Close: %v, want ErrClosed", err)
	}
	for i, f := range fs {
		if big(i) != ms[fit].MsgID { // publishes leave in any order
			waitAcked(t, []*PubFuture{f})
		}
	}
	if s := cons.Stats(); s.AcksSent < fit || s.AckErrors != 2 {
		t.Errorf("AcksSent %d, AckErrors %d; want ≥ %d, 2 (the two refused)", s.AcksSent, s.AckErrors, fit)
	}
}

// TestAckAsyncErrorReturned: an ACK handed over that then fails comes
// back from the next Next as an *AckError naming its msg_id.
func TestAckAsyncErrorReturned(t *testing.T) {
	errSign := errors.New("injected signing failure")
	pub, cons, _, gate, msgs := gatedConsumer(t, WithManualAck())
	gate.fail = func(string) error { return errSign }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := pub.PublishAsync(ctx, "job", nil, WithRecipients(c1), WithAckTimeout(20*time.Second), WithMsgID(msgID(0)))
	if err != nil {
		t.Fatal(err)
	}
	if err := readN(t, msgs, 1)[0].AckAsync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	r := next(t, msgs, "ACK error")
	var ae *AckError
	if r.m != nil || !errors.As(r.err, &ae) || ae.MsgID != msgID(0) || !errors.Is(r.err, errSign) {
		t.Fatalf("Next: %v, %v; want nil and an *AckError for %s", r.m, r.err, msgID(0))
	}
	if got := strings.Count(r.err.Error(), "gilmsg:"); got != 1 {
		t.Errorf("%q says gilmsg: %d times", r.err, got)
	}
	if s := cons.Stats(); s.AckErrors != 1 {
		t.Errorf("AckErrors %d, want 1", s.AckErrors)
	}
	cancel()
	f.Err()
}

// TestRunConsumersAcksOffRunner: RunConsumers dispatches the next
// messages while the ACKs of those before are being signed, on every
// core, ACKing before or after the consumers. Before, it signed each ACK
// on its one goroutine: with the first ACK held, no consumer saw more
// than one message and one ACK was signed at a time.
func TestRunConsumersAcksOffRunner(t *testing.T) {
	const n = 4
	cores := needCores(t)
	for _, tc := range []struct {
		name string
		opts []RunOption
	}{{"before", nil}, {"after", []RunOption{WithAckAfterConsume()}}} {
		t.Run(tc.name, func(t *testing.T) {
			net := newTestNet(t)
			pub := net.start(pubCN)
			gate := newSignGate(t)
			cons := net.start(c1, gate.option())
			var consumed atomic.Int64
			count := ConsumerFunc(pub.FullTopic("", "job"), func(context.Context, *Message) error {
				consumed.Add(1)
				return nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- cons.RunConsumers(ctx, []Consumer{count}, tc.opts...) }()
			defer func() {
				gate.open()
				cancel()
				if err := <-ran; err != nil {
					t.Errorf("RunConsumers: %v", err)
				}
			}()
			if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
				t.Fatal(err)
			}
			fs := publishN(t, pub, n, msgID)
			waitFor(t, "every message consumed while the ACKs are held", func() bool { return consumed.Load() == n })
			waitFor(t, "ACKs signed at once", func() bool { return gate.in.Load() >= min(n, cores) })
			gate.open()
			waitAcked(t, fs)
			if s := cons.Stats(); s.AckErrors != 0 {
				t.Errorf("AckErrors %d", s.AckErrors)
			}
		})
	}
}

// TestBusCloseClosesSubscriptionsAtOnce: Bus.Close closes its
// subscriptions together, each sending its queued ACKs, and its
// publisher only after them all. Before, it closed them one after
// another: while the first waited for its held ACKs, the second was not
// even closed.
func TestBusCloseClosesSubscriptionsAtOnce(t *testing.T) {
	const subs = 3
	net := newTestNet(t)
	pub := net.start(pubCN)
	gate := newSignGate(t)
	cons := net.start(c1, gate.option())
	var all []*Subscription
	for range subs {
		sub, err := cons.Subscribe(ctxT(t), "")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sub)
	}
	if err := pub.WaitSubscribers(ctxT(t), "job", subs); err != nil {
		t.Fatal(err)
	}
	fs := publishN(t, pub, 1, msgID)
	for _, sub := range all {
		for {
			m, err := sub.Next(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if m.Topic == pub.FullTopic("", "job") {
				break // its ACK is queued, held at the gate
			}
		}
	}
	closed := make(chan struct{})
	go func() { cons.Close(); close(closed) }()
	waitFor(t, "every subscription closing while the ACKs are held", func() bool {
		for _, sub := range all {
			if !sub.closed.Load() {
				return false
			}
		}
		return true
	})
	gate.open()
	<-closed
	if s := cons.Stats(); s.AcksSent < subs || s.AckErrors != 0 {
		t.Errorf("AcksSent %d, AckErrors %d; want ≥ %d, 0: the publisher closed under the ACKs", s.AcksSent, s.AckErrors, subs)
	}
	waitAcked(t, fs)
}
