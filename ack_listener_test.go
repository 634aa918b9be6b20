package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleNames adds count names to n's endpoints, each certified as itself in
// every config, on addresses where nobody listens: the rest of a big bus,
// of which the test runs a few peers.
func (n *testNet) idleNames(t *testing.T, count int) {
	t.Helper()
	var names []string
	for i := range count {
		name := fmt.Sprintf("idle%02d.example.org", i)
		n.endpoints[name] = []string{deadAddr(t)}
		names = append(names, name)
	}
	prev := n.mutate
	n.mutate = func(c *Config) {
		for _, name := range names {
			c.Certnames[name] = name
		}
		if prev != nil {
			prev(c)
		}
	}
}

// deadAddr is a loopback address nobody listens on (a port just freed).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// startNetRelay runs a relay on free ports and lists its outbound side in
// n's endpoints; start it before the buses.
func startNetRelay(t *testing.T, n *testNet) *testRelayRun {
	t.Helper()
	cfg := n.config("")
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	r := startRelay(t, cfg)
	n.endpoints["relay_outbound"] = []string{r.OutboundEndpoint()}
	return r
}

// ackListenerAddrs lists, sorted, the addresses b's ACK listener has
// opened (or is opening).
func ackListenerAddrs(b *Bus) []string {
	l := b.acks
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.added))
}

// listensAt reports whether b's ACK listener has opened addr and finished
// waiting for it to connect.
func listensAt(b *Bus, addr string) bool {
	l := b.acks
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.added[addr]
	return g != nil && isDone(g.done)
}

// On a bus of many names, the ACK listener connects only to the recipient's
// endpoint and the relay's; a publish to a new recipient first grows it to
// that recipient's endpoint, connected before the message goes out, and the
// one ACK the recipient sends, to a publisher that never resends, is heard.
func TestAckListenerOnlyWhereRecipientsAnswer(t *testing.T) {
	n := newTestNet(t)
	relay := startNetRelay(t, n)
	n.idleNames(t, 47)
	raw := newRawRecipient(t, n, c3) // the recipient that comes later

	var pub *Bus
	var mu sync.Mutex
	var sentEarly []string
	hooks := &Hooks{MessageOut: func(topic string) {
		// On the publishing goroutine, as the message is queued.
		if strings.HasSuffix(topic, ".grow") && !listensAt(pub, raw.endpoint) {
			mu.Lock()
			sentEarly = append(sentEarly, topic)
			mu.Unlock()
		}
	}}
	// A ready timeout that only a failure reaches: a growth that is over
	// is then a connected one.
	pub = n.start(pubCN, WithoutResend(), WithHooks(hooks), WithReadyTimeout(20*time.Second))
	cs, _ := n.consumers(t, c1)
	raw.listen(pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "job", 2); err != nil {
		t.Fatal(err)
	}
	all := len(pub.subscribeEndpoints())
	if all != 51 {
		t.Fatalf("%d endpoints configured, want 51: the test proves less", all)
	}

	r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, c1+" to see the message", func() bool { return cs.count(c1, r.MsgID) == 1 })
	want := []string{n.endpoints[c1][0], relay.OutboundEndpoint()}
	slices.Sort(want)
	if got := ackListenerAddrs(pub); !slices.Equal(got, want) {
		t.Fatalf("ACK listener at %v, want %v (%s's endpoint and the relay's) of %d", got, want, c1, all)
	}
	if got := pub.acks.sub.Endpoints(); got != 2 {
		t.Fatalf("ACK listener has %d sockets, want 2", got)
	}

	res := make(chan publishResult, 1)
	go func() {
		r, err := pub.Publish(ctxT(t), "grow", nil, WithRecipients(c3), WithAckTimeout(20*time.Second))
		res <- publishResult{r, err}
	}()
	env := raw.next()
	for !strings.HasSuffix(env.Topic, ".grow") { // the first publish reached c3 too
		env = raw.next()
	}
	// c1's subscription to everything reached c3 long ago: look for the
	// listener's own.
	if !slices.Contains(raw.subs, pub.ackTopic) {
		t.Fatalf("the message reached %s before the ACK listener's subscription (subscriptions %q)", c3, raw.subs)
	}
	raw.send(pub.ackTopic, env.MsgID, raw.signer, false) // once: the publisher does not resend either
	got := <-res
	mu.Lock()
	defer mu.Unlock()
	if len(sentEarly) > 0 {
		t.Fatalf("%v sent before the ACK listener was connected to %s", sentEarly, c3)
	}
	if got.err != nil {
		t.Fatalf("%v (stats %+v)", got.err, pub.Stats())
	}
	if !slices.Equal(hostsOf(got.r.Acks), []string{c3}) {
		t.Fatalf("acks %v", got.r.Acks)
	}
	if got := pub.acks.sub.Endpoints(); got != 3 {
		t.Fatalf("ACK listener has %d sockets after growing, want 3", got)
	}
	if s := pub.Stats(); s.Acked != 2 || s.AcksMatched != 2 || s.TimedOut != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A recipient that no name of the config signs as (here, a process that
// signs through cert_prefix under a name certnames does not list) is
// listened for everywhere, as the listener always did.
func TestAckListenerUnknownRecipientEverywhere(t *testing.T) {
	const worker = "worker.example.org"
	n := newTestNet(t)
	n.idleNames(t, 10)
	prev := n.mutate
	n.mutate = func(c *Config) {
		prev(c)
		if c.Name == worker {
			c.CertPrefix = "acks"
			c.Certnames["acks."+shortHostname()] = c2
		}
	}
	pub := n.start(pubCN)
	cs, _ := n.consumers(t, worker)
	r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c2), WithAckTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostsOf(r.Acks), []string{c2}) {
		t.Fatalf("acks %v", r.Acks)
	}
	waitFor(t, "the worker to see the message", func() bool { return cs.count(worker, r.MsgID) == 1 })
	all := len(pub.subscribeEndpoints())
	if got := pub.acks.sub.Endpoints(); got != all || all != 12 {
		t.Fatalf("ACK listener has %d sockets, want every one of the %d endpoints (12)", got, all)
	}
}

// An active recipient answers through the relay: its own name's endpoint
// is listed but nobody is there, and its ACK, which comes through the
// relay, is heard.
func TestAckListenerActiveRecipientThroughRelay(t *testing.T) {
	n := newTestNet(t)
	relay := startNetRelay(t, n)
	n.idleNames(t, 10)
	n.endpoints[c2] = []string{deadAddr(t)} // where c2 would bind, were it not active
	pub := n.start(pubCN)

	ccfg := n.config(c2)
	ccfg.Active = true
	ccfg.RelayInbound = []string{relay.InboundEndpoint()}
	consumer, err := New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consumer.Close() })
	var cs consumerSet
	cs.run(t, c2, consumer)
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}

	r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c2), WithAckTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostsOf(r.Acks), []string{c2}) {
		t.Fatalf("acks %v", r.Acks)
	}
	waitFor(t, c2+" to see the message", func() bool { return cs.count(c2, r.MsgID) == 1 })
	want := []string{n.endpoints[c2][0], relay.OutboundEndpoint()}
	slices.Sort(want)
	if got := ackListenerAddrs(pub); !slices.Equal(got, want) {
		t.Fatalf("ACK listener at %v, want %v (%s's endpoint and the relay's)", got, want, c2)
	}
}

// Each recipient's sources are the endpoints of the names that sign as it,
// as the validator names signers, plus the relay's; every endpoint for a
// recipient no name signs as.
func TestAckSources(t *testing.T) {
	const (
		fpr1 = "0123456789ABCDEF0123456789ABCDEF01234567"
		fpr2 = "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
	)
	endpoints := map[string][]string{
		"a.host1":        {"tcp://h:1", "tcp://h:2"},
		"b.host1":        {"tcp://h:3"},
		"a2.host2":       {"tcp://h:4"},
		"host1":          {"tcp://h:5"},
		"relay_outbound": {"tcp://h:6"},
		"relay_inbound":  {"tcp://h:7"},
	}
	all := []string{"tcp://h:1", "tcp://h:2", "tcp://h:3", "tcp://h:4", "tcp://h:5", "tcp://h:6"}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   map[string][]string // recipient → addresses
	}{
		{"x509", func(c *Config) {
			c.Certnames = map[string]string{"a.host1": "A", "b.host1": "B", "a2.host2": "A", "shell.host1": "S"}
		}, map[string][]string{
			"A": {"tcp://h:1", "tcp://h:2", "tcp://h:4", "tcp://h:6"},
			"B": {"tcp://h:3", "tcp://h:6"},
			"S": all, // signs as relay_inbound: no name of its own
			"Z": all,
		}},
		{"gpg", func(c *Config) {
			c.CryptoValidateBackends = []string{"gpg"}
			c.Certnames = map[string]string{"a.host1": "A"} // not a backend validation accepts
			// The validator names fpr1 "alias" (the first name, sorted).
			c.GPGKeys = map[string]string{"host1": fpr1, "host2": "0x" + strings.ToLower(fpr2), "alias": fpr1[24:]}
		}, map[string][]string{
			"alias": {"tcp://h:1", "tcp://h:2", "tcp://h:3", "tcp://h:5", "tcp://h:6"},
			"host2": {"tcp://h:4", "tcp://h:6"},
			"host1": all, // never named so
			"A":     all,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Endpoints = endpoints
			tc.mutate(cfg)
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			src := newAckSources(b)
			for r, want := range tc.want {
				var got []string
				for _, ep := range src.forRecipient(r) {
					got = append(got, ep.addr)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: %v, want %v", r, got, want)
				}
			}
		})
	}
}

// TestAckListenerStartOutlivesFirstCtx: the first reliable publish's ctx
// ends while the ACK listener waits to connect to a recipient that is not
// up yet. The listener keeps starting on the bus's lifetime, and records
// the recipient's endpoint as connected only once it is, so a publish made
// when the recipient is up waits for that connection and gets its single
// ACK (no resend). Before, the first ctx cut the wait short, the endpoint
// counted as ready, and that ACK went out before the listener had
// reconnected (zmq_reconnect_ivl 1 s here): lost.
func TestAckListenerStartOutlivesFirstCtx(t *testing.T) {
	n := newTestNet(t)
	const rcpt = "consumer01.example.org"
	n.endpoints[rcpt] = []string{deadAddr(t)}
	n.mutate = func(c *Config) {
		c.ZMQReconnectIvl, c.ZMQReconnectIvlMax = 1000, 1000
		c.PostInitSleep = 20 // the ready timeout: not reached
	}
	pub := n.start("publisher01.example.org", WithoutResend())

	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	_, err := pub.Publish(ctx, "order.created", map[string]any{"n": 1}, WithRecipients(rcpt))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first publish: %v, want DeadlineExceeded", err)
	}

	// No post-init wait: the consumer ACKs at once, as a long-running
	// one would, so only the listener's own wait makes sure it hears it.
	consumer := n.start(rcpt, WithoutPostInitWait())
	tail(t, consumer, "", WithEndpoints(pub.Endpoint()))
	if err := pub.WaitSubscribers(ctxT(t), "order.created", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "order.created", map[string]any{"n": 2},
		WithRecipients(rcpt), WithAckTimeout(5*time.Second)); err != nil {
		t.Fatalf("publish once the recipient is up: %v", err)
	}
}

// TestWithCloseNoGoroutine: a ctx tied to the bus's Close costs no
// goroutine while it lives (context.AfterFunc), and is still cancelled by
// Close.
func TestWithCloseNoGoroutine(t *testing.T) {
	n := newTestNet(t)
	b := n.start("")
	before := runtime.NumGoroutine()
	var ctxs []context.Context
	for range 100 {
		ctx, cancel := b.withClose(context.Background())
		defer cancel()
		ctxs = append(ctxs, ctx)
	}
	if grown := runtime.NumGoroutine() - before; grown >= 50 {
		t.Errorf("%d goroutines for 100 live contexts", grown)
	}
	b.Close()
	for _, ctx := range ctxs {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not cancel a withClose context")
		}
	}
}

// TestAckListenerStartRetried: a start of the ACK listener that fails
// (here: not one endpoint the recipients can answer from can be used)
// fails the publishes waiting for it, and is not kept: the next reliable
// publish starts the listener again, and once the endpoints are usable it
// hears the recipient's ACK. Were the failure kept, every later reliable
// publish of the bus would fail with it.
func TestAckListenerStartRetried(t *testing.T) {
	n := newTestNet(t)
	const pubCN, rcpt = "publisher01.example.org", "consumer01.example.org"
	pub := n.start(pubCN, WithoutResend())
	consumer := n.start(rcpt, WithoutPostInitWait())
	usable := pub.cfg.Endpoints
	// Its own endpoint would do as a last resort (the listener connects
	// everywhere when it can nowhere else): leave only the recipient's.
	pub.cfg.Endpoints = map[string][]string{rcpt: {"bogus://consumer"}}

	for i := range 2 {
		_, err := pub.Publish(ctxT(t), "order.created", map[string]any{"n": i}, WithRecipients(rcpt))
		if !errors.Is(err, ErrEndpoint) || !strings.Contains(err.Error(), "bogus://") {
			t.Fatalf("publish %d with no usable endpoint: %v, want the listener's start error naming the endpoint", i, err)
		}
	}

	pub.cfg.Endpoints = usable
	tail(t, consumer, "", WithEndpoints(pub.Endpoint()))
	if err := pub.WaitSubscribers(ctxT(t), "order.created", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "order.created", map[string]any{"n": 2},
		WithRecipients(rcpt), WithAckTimeout(5*time.Second)); err != nil {
		t.Fatalf("publish once the endpoints are usable: %v", err)
	}
}
