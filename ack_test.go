package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	pubCN = "publisher01.example.org"
	c1    = "consumer01.example.org"
	c2    = "consumer02.example.org"
	c3    = "consumer03.example.org"
)

// consumers starts a bus per name, each tailing everything and ACKing;
// every message a consumer's application sees is counted by msg_id.
type consumerSet struct {
	mu   sync.Mutex
	seen map[string]map[string]int // consumer → msg_id → times yielded
}

func (cs *consumerSet) count(name, id string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.seen[name][id]
}

func (cs *consumerSet) run(t *testing.T, name string, b *Bus, opts ...SubscribeOption) {
	cs.mu.Lock()
	if cs.seen == nil {
		cs.seen = map[string]map[string]int{}
	}
	cs.seen[name] = map[string]int{}
	cs.mu.Unlock()
	ch := tail(t, b, "", opts...)
	go func() {
		for m := range ch {
			cs.mu.Lock()
			cs.seen[name][strings.Clone(m.MsgID)]++
			cs.mu.Unlock()
		}
	}()
}

// consumers starts a bus per name, then (once all are started) runs each
// as a consumer counted in the returned set.
func (n *testNet) consumers(t *testing.T, names ...string) (*consumerSet, []*Bus) {
	buses := make([]*Bus, len(names))
	for i, name := range names {
		buses[i] = n.start(name)
	}
	cs := &consumerSet{}
	for i, name := range names {
		cs.run(t, name, buses[i])
	}
	return cs, buses
}

func TestReliablePublishOneAndThree(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	cs, _ := n.consumers(t, c1, c2, c3)
	for _, recips := range [][]string{{c1}, {c1, c2, c3}} {
		t.Run(fmt.Sprint(len(recips)), func(t *testing.T) {
			r, err := pub.Publish(ctxT(t), "job", map[string]any{"n": 1}, WithRecipients(recips...), WithAckTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if got := hostsOf(r.Acks); !sameSet(got, recips) {
				t.Fatalf("acks from %v, want %v", got, recips)
			}
			for _, a := range r.Acks {
				if a.Delay <= 0 || a.Delay > 5*time.Second {
					t.Errorf("%s: delay %v", a.Recipient, a.Delay)
				}
			}
			for _, name := range recips {
				waitFor(t, name+" to see the message", func() bool { return cs.count(name, r.MsgID) == 1 })
			}
		})
	}
	if s := pub.Stats(); s.Acked != 2 || s.TimedOut != 0 || s.AcksMatched != 4 {
		t.Errorf("stats %+v", s)
	}
}

// A recipient that is down makes the publish time out, naming exactly it.
func TestReliablePublishRecipientDown(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	up := n.start(c1)
	n.start(c2).Close() // its endpoint is known, nobody is there
	var cs consumerSet
	cs.run(t, c1, up)

	start := time.Now()
	// Long enough for the live consumer's ACK even on a loaded machine.
	_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1, c2), WithAckTimeout(2*time.Second))
	var te *AckTimeoutError
	if !errors.Is(err, ErrAckTimeout) || !errors.As(err, &te) {
		t.Fatalf("err = %v, want an AckTimeoutError", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err does not match context.DeadlineExceeded")
	}
	if len(te.Missing) != 1 || te.Missing[0] != c2 || len(te.Acked) != 1 || te.Acked[0].Recipient != c1 {
		t.Fatalf("missing %v acked %v", te.Missing, te.Acked)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("gave up after %v, before the timeout", d)
	}
	if s := pub.Stats(); s.TimedOut != 1 || s.Resends == 0 {
		t.Errorf("stats %+v: want one timeout and some resends", s)
	}
}

// Python gilmsg's false positive: an ACK from an earlier publish completes
// a later one. Here the second publish must time out naming B.
func TestNoFalsePositiveAfterRecipientStops(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	_, buses := n.consumers(t, c1, c2)
	b := buses[1]
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1, c2), WithAckTimeout(5*time.Second)); err != nil {
		t.Fatalf("both up: %v", err)
	}
	b.Close()
	_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1, c2), WithAckTimeout(2*time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c2 {
		t.Fatalf("err = %v, want a timeout naming only %s", err, c2)
	}
}

func TestPublishWithoutRecipientsIsPlain(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	sub := n.start(c1)
	msgs := tail(t, sub, "")
	// A plain publish is not resent: wait until the publisher has applied
	// the subscription (Subscribe only knows it was sent).
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "x", nil, WithRecipients()); err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs)
	if m.IsGilmsg() {
		t.Fatal("a plain publish carries gilmsg_version")
	}
	if s := sub.Stats(); s.AcksSent != 0 {
		t.Fatalf("a plain message was ACKed: %+v", s)
	}
}

// Many goroutines publish reliably at once; each gets its own result.
func TestConcurrentReliablePublishes(t *testing.T) {
	const goroutines = 100
	n := newTestNet(t)
	pub := n.start(pubCN)
	n.consumers(t, c1, c2)
	var wg sync.WaitGroup
	ids := make([]string, goroutines)
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := pub.Publish(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1, c2), WithAckTimeout(20*time.Second))
			if err != nil {
				t.Error(err)
				return
			}
			if !sameSet(hostsOf(r.Acks), []string{c1, c2}) {
				t.Errorf("publish %d: acks %v", i, r.Acks)
			}
			ids[i] = r.MsgID
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("msg_id %q empty or repeated", id)
		}
		seen[id] = true
	}
}

// A consumer whose subscription connects after the first send still ACKs
// within the timeout thanks to resends, and its application sees the
// message once.
func TestResendReachesLateConsumer(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	late := n.start(c1)
	res := make(chan error, 1)
	var id atomic.Value
	go func() {
		r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
		if r != nil {
			id.Store(r.MsgID)
		}
		res <- err
	}()
	// Subscribe only once the message has left at least once.
	waitFor(t, "the first send", func() bool { return pub.Stats().Published >= 1 })
	var cs consumerSet
	cs.run(t, c1, late)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	msgID := id.Load().(string)
	// Everything the publisher sent before this marker reached the
	// consumer before it: the count is final once the marker arrives.
	marker, err := pub.Publish(ctxT(t), "marker", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker", func() bool { return cs.count(c1, marker.MsgID) == 1 })
	if got := cs.count(c1, msgID); got != 1 {
		t.Fatalf("the application saw the message %d times", got)
	}
}

// Cancelling the context ends a reliable publish promptly.
func TestReliablePublishCancel(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	n.start(c1).Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "the send", func() bool { return pub.Stats().Published >= 1 })
		cancel()
	}()
	start := time.Now()
	_, err := pub.Publish(ctx, "job", nil, WithRecipients(c1), WithAckTimeout(time.Minute))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestPublishAsync(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithMaxInFlight(4))
	var cs consumerSet
	cs.run(t, c1, n.start(c1))
	var futures []*PubFuture
	for i := range 4 {
		f, err := pub.PublishAsync(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1), WithAckTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	if _, err := pub.PublishAsync(ctxT(t), "job", nil, WithRecipients(c1)); !errors.Is(err, ErrTooManyInFlight) {
		t.Fatalf("fifth in flight: err = %v", err)
	}
	if err := pub.WaitAsync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		select {
		case <-f.Done():
		default:
			t.Fatalf("future %d not done after WaitAsync", i)
		}
		if r, err := f.Result(); err != nil || len(r.Acks) != 1 {
			t.Fatalf("future %d: %v %v", i, r, err)
		}
	}
	if pub.PublishAsyncPending() != 0 {
		t.Fatal("pending after all done")
	}
}

// A bus with no endpoint watches gilmsg messages without trying to ACK
// them; the consumer that can ACK does.
func TestWatcherDoesNotAck(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	consumer := n.start(c1)
	watcher := n.start("")
	var cs consumerSet
	cs.run(t, c1, consumer)
	cs.run(t, "watcher", watcher)
	r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watcher to see it", func() bool { return cs.count("watcher", r.MsgID) == 1 })
	if s := watcher.Stats(); s.AcksSent != 0 {
		t.Fatalf("watcher sent %d ACKs", s.AcksSent)
	}
}
