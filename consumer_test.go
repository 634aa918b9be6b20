package gilmsg

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// runConsumers runs b's consumers until the test ends.
func runConsumers(t *testing.T, b *Bus, cs []Consumer, opts ...RunOption) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.RunConsumers(ctx, cs, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("RunConsumers: %v", err)
		}
	})
	// RunConsumers subscribes in its goroutine; wait until it has.
	waitFor(t, "the runner to subscribe", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.subs) > 0
	})
}

type recorder struct {
	topic string
	fail  error
	mu    sync.Mutex
	got   []string
}

func (r *recorder) Topic() string { return r.topic }

func (r *recorder) Consume(_ context.Context, m *Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m.MsgID)
	return r.fail
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// Many consumers share one subscription; each gets its topics, and a
// reliable publish is ACKed once.
func TestConsumersDispatchAndAck(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithModname("app"))
	hub := n.start(c1)
	jobs := &recorder{topic: "org.example.dev.app.job"}
	all := &recorder{topic: "org.example.dev.app"}
	other := &recorder{topic: "org.example.dev.other"}
	runConsumers(t, hub, []Consumer{jobs, all, other})

	r, err := pub.Publish(ctxT(t), "job.new", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Acks) != 1 {
		t.Fatalf("acks %v", r.Acks)
	}
	if _, err := pub.Publish(ctxT(t), "note", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both consumed", func() bool { return jobs.count() == 1 && all.count() == 2 })
	if other.count() != 0 {
		t.Errorf("the other consumer got %d", other.count())
	}
	// One ACK per message, though three consumers matched: both were
	// ACKed (the publishes succeeded), so wait for the count. Resends
	// (a loaded machine) add at most one ACK per duplicate the hub
	// dropped, and only once the first ACK has gone. A duplicate is
	// counted before its ACK is sent, so reading ACKs first and
	// duplicates second never sees more ACKs than the rule allows.
	waitFor(t, "two ACKs counted", func() bool { return hub.Stats().AcksSent >= 2 })
	acks := hub.Stats().AcksSent
	if dups := hub.Stats().Duplicates; acks > 2+dups {
		t.Errorf("ACKs sent %d, want one per message and at most one per duplicate (%d)", acks, dups)
	}
}

// With WithAckAfterConsume a failing consumer produces no ACK, so the
// publisher times out; a succeeding one is ACKed.
func TestAckAfterConsume(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithModname("app"))
	hub := n.start(c1)
	bad := &recorder{topic: "org.example.dev.app.bad", fail: errors.New("disk full")}
	good := &recorder{topic: "org.example.dev.app.good"}
	runConsumers(t, hub, []Consumer{bad, good}, WithAckAfterConsume())

	_, err := pub.Publish(ctxT(t), "bad", nil, WithRecipients(c1), WithAckTimeout(500*time.Millisecond))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c1 {
		t.Fatalf("err = %v, want a timeout naming %s", err, c1)
	}
	if bad.count() == 0 {
		t.Fatal("the failing consumer never saw the message")
	}
	if s := hub.Stats(); s.AcksSent != 0 {
		t.Fatalf("a failed message was ACKed (%d)", s.AcksSent)
	}
	if _, err := pub.Publish(ctxT(t), "good", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestCommonPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a.b.c"}, "a.b.c"},
		{[]string{"a.b.c", "a.b.d"}, "a.b."},
		{[]string{"a.b", "x"}, ""},
		{[]string{"a.b", ""}, ""},
	} {
		if got := commonPrefix(tc.in); got != tc.want {
			t.Errorf("commonPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The package-level API wraps one default bus.
func TestDefaultBus(t *testing.T) {
	n := newTestNet(t)
	sub := n.start("")
	cfg := n.config(pubCN)
	if err := Init(cfg); err != nil {
		t.Fatal(err)
	}
	defer Destroy()
	if err := Init(cfg); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second Init: %v", err)
	}
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	sub.cfg.Endpoints[pubCN] = []string{b.Endpoint()}
	msgs := tail(t, sub, "")
	waitFor(t, "a message", func() bool {
		if _, err := Publish(ctxT(t), "x", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-msgs:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	if err := Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := Destroy(); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}

// A message that reaches the runner's subscription (the consumers' common
// prefix) but no consumer is not ACKed, whichever the ACK point: nothing
// handled it.
func TestUnmatchedMessageNotAcked(t *testing.T) {
	for _, opts := range [][]RunOption{nil, {WithAckAfterConsume()}} {
		n := newTestNet(t)
		pub := n.start(pubCN, WithModname("app"))
		hub := n.start(c1)
		a := &recorder{topic: "org.example.dev.app.a"}
		b := &recorder{topic: "org.example.dev.app.b"}
		runConsumers(t, hub, []Consumer{a, b}, opts...)
		if _, err := pub.Publish(ctxT(t), "a", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		// On one connection, c arrives before the second a: once that is
		// ACKed, c has been through the runner.
		_, err := pub.Publish(ctxT(t), "c", nil, WithRecipients(c1), WithAckTimeout(time.Second))
		if !errors.Is(err, ErrAckTimeout) {
			t.Errorf("AckAfterConsume %v: a message no consumer matched: %v, want an ACK timeout", opts != nil, err)
		}
		if _, err := pub.Publish(ctxT(t), "a", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "both a consumed", func() bool { return a.count() == 2 })
		if b.count() != 0 {
			t.Errorf("b consumed %d", b.count())
		}
	}
}
