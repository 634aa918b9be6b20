package gilmsg

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

// testNet is a local bus for one test: a shared PKI, and the endpoints of
// every bus the test started, each bound on 127.0.0.1 with the port read
// back, so later buses (and restarts) find the earlier ones.
//
// Like one config file shared by every process, each bus's endpoints list
// every bus started: start adds the new endpoint to the earlier buses'
// configs too. So start every bus before any of them subscribes or
// publishes reliably (which read the endpoints then).
type testNet struct {
	t         *testing.T
	pki       *devPKI
	endpoints map[string][]string
	buses     []*Bus
	mutate    func(*Config)
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	// The snapshot is taken now: goroutines this test starts and leaves
	// behind are leaks (IgnoreCurrent inside Cleanup would ignore them).
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	return &testNet{t: t, pki: testPKI(t), endpoints: map[string][]string{}}
}

// config is the config a bus named name gets: the PKI's, with name
// certified as itself and every endpoint known so far.
func (n *testNet) config(name string) *Config {
	cfg := n.pki.Config()
	cfg.Name = name
	cfg.Endpoints = maps.Clone(n.endpoints)
	if name != "" {
		if _, ok := cfg.Endpoints[name]; !ok {
			cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
		}
	}
	// The ready timeout: reached only by tests with an endpoint that is
	// down on purpose.
	cfg.PostInitSleep = 0.5
	if n.mutate != nil {
		n.mutate(cfg)
	}
	return cfg
}

// start makes a bus named name (a certname of the PKI, or "" for a bus that
// only subscribes) and records its endpoint; Close is registered. Started
// again under the same name, a bus binds the endpoint it had.
func (n *testNet) start(name string, opts ...Option) *Bus {
	n.t.Helper()
	b, err := New(n.config(name), opts...)
	if err != nil {
		n.t.Fatalf("New(%q): %v", name, err)
	}
	n.t.Cleanup(func() { b.Close() })
	if name != "" {
		ep := []string{b.Endpoint()}
		n.endpoints[name] = ep
		for _, other := range n.buses {
			other.cfg.Endpoints[name] = ep
		}
		b.cfg.Endpoints[name] = ep
	}
	n.buses = append(n.buses, b)
	return b
}

// tail subscribes b to prefix and returns a channel of what it yields,
// from a goroutine that ends with the test.
func tail(t *testing.T, b *Bus, prefix string, opts ...SubscribeOption) <-chan *Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.Subscribe(ctx, prefix, opts...)
	if err != nil {
		cancel()
		t.Fatalf("Subscribe: %v", err)
	}
	ch := make(chan *Message, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer sub.Close()
		for m, err := range sub.Messages(ctx) {
			if err != nil {
				t.Errorf("tail: %v", err)
				continue
			}
			// A test that stopped reading must not keep this goroutine,
			// and its cleanup, waiting forever.
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// receive waits for one message, failing the test after a generous bound.
func receive(t *testing.T, ch <-chan *Message) *Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("tail ended")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hostsOf(acks []Ack) []string {
	var out []string
	for _, a := range acks {
		out = append(out, a.Recipient)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// sendEvery sends frames on raw every interval, from a goroutine, until
// the returned stop is called.
func sendEvery(raw *zmq.Socket, every time.Duration, frames ...string) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(every):
				raw.SendMessage(frames)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// awaitRawPeer sends a message signed by pub from the raw socket until
// msgs yields it: the raw peer's connection to the subscription is up.
func awaitRawPeer(t *testing.T, raw *zmq.Socket, pub *Bus, msgs <-chan *Message) {
	t.Helper()
	marker, err := pub.prepare(context.Background(), "x", map[string]any{"marker": true}, &pubOptions{}, prepFlags{sign: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the raw peer to be connected", func() bool {
		raw.SendMessage(marker.topic, string(marker.body))
		select {
		case <-msgs:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}
