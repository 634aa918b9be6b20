package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

func TestPublishTailSignedRoundTrip(t *testing.T) {
	n := newTestNet(t)
	pub := n.start("publisher01.example.org", WithModname("bodhi"))
	sub := n.start("")
	msgs := tail(t, sub, "")
	if err := pub.WaitSubscribers(ctxT(t), "update.request", 1); err != nil {
		t.Fatal(err)
	}

	payload := map[string]any{"update": "FEDORA-2026-1", "karma": 3, "ratio": 0.5, "text": "é</script>"}
	r, err := pub.Publish(ctxT(t), "update.request", payload)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs)
	if m.Topic != "org.example.dev.bodhi.update.request" || r.Topic != m.Topic {
		t.Errorf("topic = %q (receipt %q)", m.Topic, r.Topic)
	}
	if m.MsgID != r.MsgID || !strings.HasPrefix(m.MsgID, strconv.Itoa(time.Now().Year())+"-") {
		t.Errorf("msg_id = %q, receipt %q", m.MsgID, r.MsgID)
	}
	if m.Signer != "publisher01.example.org" || m.Crypto != "x509" {
		t.Errorf("signer %q crypto %q", m.Signer, m.Crypto)
	}
	if m.Name != "publisher01.example.org" || m.Endpoint != pub.Endpoint() {
		t.Errorf("from %q %q, want the publisher's name and endpoint %q", m.Name, m.Endpoint, pub.Endpoint())
	}
	if m.I != 1 || m.Timestamp < time.Now().Add(-time.Minute).Unix() || m.Username == "" {
		t.Errorf("i %d timestamp %d username %q", m.I, m.Timestamp, m.Username)
	}
	var got struct {
		Update string
		Karma  int
		Ratio  float64
		Text   string
	}
	if err := m.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Update != "FEDORA-2026-1" || got.Karma != 3 || got.Ratio != 0.5 || got.Text != "é</script>" {
		t.Errorf("payload = %+v", got)
	}
	// The frame is the canonical text: what Python fedmsg would send.
	canon, err := CanonicalizeJSON(m.Body)
	if err != nil || string(canon) != string(m.Body) {
		t.Errorf("body is not canonical: %s", m.Body)
	}
	if s := sub.Stats(); s.Received != 1 || len(s.Invalid) != 0 {
		t.Errorf("subscriber stats %+v", s)
	}
	if s := pub.Stats(); s.Published != 1 {
		t.Errorf("publisher stats %+v", s)
	}
}

func TestTailTopicPrefix(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	pub := n.start("publisher01.example.org", WithModname("app"))
	sub := n.start("")
	msgs := tail(t, sub, "org.example.dev.app.keep")
	if err := pub.WaitSubscribers(ctxT(t), "keep", 1); err != nil {
		t.Fatal(err)
	}
	if n := pub.Subscribers("drop"); n != 0 {
		t.Fatalf("%d subscribers to a topic nobody wants", n)
	}
	for _, topic := range []string{"drop", "keep.one", "other.keep", "keep.two"} {
		if _, err := pub.Publish(ctxT(t), topic, map[string]any{"t": topic}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"org.example.dev.app.keep.one", "org.example.dev.app.keep.two"} {
		if m := receive(t, msgs); m.Topic != want {
			t.Fatalf("got %q, want %q", m.Topic, want)
		}
	}
	select {
	case m := <-msgs:
		t.Fatalf("unexpected %q", m.Topic)
	default:
	}
}

// Many goroutines publish at once: nothing is lost (high_water_mark 0) and
// each publisher's messages arrive in its order.
func TestConcurrentPublishersKeepOrder(t *testing.T) {
	const publishers, each = 50, 200
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false; c.HighWaterMark = 0 }
	pub := n.start("publisher01.example.org")
	sub := n.start("")
	msgs := tail(t, sub, "")
	if err := pub.WaitSubscribers(ctxT(t), "load", 1); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := pub.Publish(context.Background(), "load", map[string]any{"p": p, "i": i}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, publishers)
	for range publishers * each {
		m := receive(t, msgs)
		var v struct{ P, I int }
		if err := m.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if v.I != next[v.P] {
			t.Fatalf("publisher %d: got message %d, want %d", v.P, v.I, next[v.P])
		}
		next[v.P]++
	}
	wg.Wait()
}

// rawPub binds a plain ZeroMQ PUB on the loopback and returns it with its
// endpoint, to send what no bus would.
func rawPub(t *testing.T) (*zmq.Socket, string) {
	t.Helper()
	return rawBound(t, zmq.PUB)
}

// rawBound is [rawPub] for any socket type (an XPUB, to see subscriptions).
func rawBound(t *testing.T, typ zmq.Type) (*zmq.Socket, string) {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	s, err := zctx.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(minSendLingerMS * time.Millisecond)
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := s.GetLastEndpoint()
	t.Cleanup(func() { s.Close(); zctx.Term() })
	return s, ep
}

// Invalid and tampered messages are skipped and counted by reason while
// valid ones flow.
func TestTailSkipsInvalid(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["hostile"] = []string{ep}
	pub := n.start("publisher01.example.org")
	sub := n.start("")
	msgs := tail(t, sub, "")

	good := func(i int) []byte {
		r, err := pub.prepare(context.Background(), "x", map[string]any{"i": i}, &pubOptions{}, prepFlags{sign: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.body
	}
	tampered := strings.Replace(string(good(1)), `"i":1`, `"i":2`, 1)
	junk := [][]string{
		{pub.fullTopic("x", ""), tampered},
		{"t", "not json"},
		{"t", "[1,2]"},
		{"t", `{"topic":5}`},
		{"", "{}"}, // no topic, under the empty frame: unsigned
		{"only one frame"},
		{"t", "{}", "three"},
		{"t", "\xff\xfe"},
	}
	// The subscription may connect to the raw PUB a moment after it is
	// ready by the bus's count; send until the first junk is counted.
	waitFor(t, "junk to be counted", func() bool {
		raw.SendMessage("t", "not json")
		return sub.Stats().Invalid[ReasonMalformed] > 0
	})
	// Everything sent before a valid message is counted once it arrives.
	raw.SendMessage(pub.fullTopic("x", ""), string(good(0)))
	receive(t, msgs)
	before := sub.Stats().Invalid
	for _, frames := range junk {
		if _, err := raw.SendMessage(frames); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.SendMessage(pub.fullTopic("x", ""), string(good(7))); err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs)
	var v struct{ I int }
	m.Decode(&v)
	if v.I != 7 {
		t.Fatalf("got i=%d, want the valid message 7", v.I)
	}
	after := sub.Stats().Invalid
	if d := after[ReasonSignature] - before[ReasonSignature]; d != 1 {
		t.Errorf("signature failures counted %d, want 1", d)
	}
	if d := after[ReasonMalformed] - before[ReasonMalformed]; d != 6 {
		t.Errorf("malformed counted %d, want 6 (%v)", d, after)
	}
	if d := after[ReasonUnsigned] - before[ReasonUnsigned]; d != 1 {
		t.Errorf("unsigned counted %d, want 1", d)
	}
}

// WithInvalidMessages yields invalid messages with the reason.
func TestTailSurfaceInvalid(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["hostile"] = []string{ep}
	sub := n.start("")
	ctx := ctxT(t)
	s, err := sub.Subscribe(ctx, "", WithInvalidMessages())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The raw PUB may not have the subscription yet: send until it lands.
	stop := sendEvery(raw, 5*time.Millisecond, "t", `{"topic":"t","msg":{}}`)
	m, err := s.Next(ctx)
	stop()
	if ReasonOf(err) != ReasonUnsigned || m == nil || m.Topic != "t" {
		t.Fatalf("Next = %v, %v; want the unsigned message and its reason", m, err)
	}
}

func TestBindFallbackAndNoEndpoint(t *testing.T) {
	n := newTestNet(t)
	_, taken := rawPub(t)
	cfg := n.config("publisher01.example.org")
	cfg.Endpoints["publisher01.example.org"] = []string{taken, "tcp://127.0.0.1:*"}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Endpoint() == taken || !strings.HasPrefix(b.Endpoint(), "tcp://127.0.0.1:") {
		t.Fatalf("bound %q; the first address %q was taken", b.Endpoint(), taken)
	}

	cfg = n.config("publisher01.example.org")
	cfg.Endpoints["publisher01.example.org"] = []string{taken, b.Endpoint()}
	_, err = New(cfg)
	var ne *NoEndpointError
	if !errors.Is(err, ErrNoEndpoint) || !errors.As(err, &ne) || !strings.Contains(err.Error(), "publisher01.example.org") {
		t.Fatalf("err = %v, want a NoEndpointError naming the name", err)
	}
	if len(ne.Tried) != 2 {
		t.Errorf("tried %v, want both addresses", ne.Tried)
	}
}

// With no relay, an active publisher fails loudly instead of dropping.
func TestActivePublisherWithoutRelayFails(t *testing.T) {
	n := newTestNet(t)
	_, ep := rawPub(t) // a port we know, then nothing listening there
	cfg := n.config("")
	cfg.Active = true
	cfg.SignMessages = false
	cfg.RelayInbound = []string{strings.Replace(ep, "127.0.0.1", "127.0.0.2", 1)}
	b, err := New(cfg, WithReadyTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Publish(ctxT(t), "x", nil)
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
}

// Close releases a tail blocked waiting for messages, promptly.
func TestCloseUnblocksTail(t *testing.T) {
	n := newTestNet(t)
	n.start("publisher01.example.org")
	b, err := New(n.config(""))
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for _, err := range b.Tail(context.Background(), "") {
			ended <- err
			return
		}
		ended <- nil
	}()
	waitFor(t, "the tail to subscribe", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.subs) == 1
	})
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("tail yielded %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tail still blocked after Close")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Publish(context.Background(), "x", nil); err == nil {
		t.Fatal("publish after Close succeeded")
	}
}

// Cancelling the context ends a tail's loop; breaking out closes its
// sockets.
func TestTailContextAndBreak(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	pub := n.start("publisher01.example.org")
	sub := n.start("")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan int, 10)
	go func() {
		defer close(got)
		for m, err := range sub.Tail(ctx, "") {
			if err != nil {
				t.Error(err)
				return
			}
			got <- int(m.I)
			break
		}
	}()
	waitFor(t, "one message", func() bool {
		pub.Publish(ctxT(t), "x", nil)
		return len(got) > 0
	})
	<-got
	if _, ok := <-got; ok {
		t.Fatal("loop went on after break")
	}
	waitFor(t, "the subscription to close", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.subs) == 0
	})

	ended := make(chan struct{})
	go func() {
		for range sub.Tail(ctx, "") {
		}
		close(ended)
	}()
	cancel()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("tail did not end on cancel")
	}
}

// A config shaped as Python's fedmsg-config prints it, with several names,
// drives a publisher and a tail unchanged.
func TestPythonShapedConfigDrivesBus(t *testing.T) {
	n := newTestNet(t)
	_, ep1 := rawPub(t)
	cfg := n.config("")
	doc := fmt.Sprintf(`{
 "topic_prefix": "org.fedoraproject", "environment": "dev", "name": "publisher01.example.org",
 "endpoints": {"publisher01.example.org": ["tcp://127.0.0.1:*"], "bodhi.bodhi01": [%q], "relay_outbound": [%q]},
 "relay_inbound": "tcp://127.0.0.1:1", "sign_messages": true, "validate_signatures": true,
 "ssldir": %q, "ca_cert_location": %q, "crl_location": %q,
 "certnames": {"publisher01.example.org": "publisher01.example.org"},
 "routing_policy": {}, "routing_nitpicky": false, "high_water_mark": 0, "io_threads": 1,
 "post_init_sleep": 0.5, "zmq_linger": 1000, "irc": [], "logging": {"version": 1},
 "stomp_uri": "localhost:59597", "fedmsg.consumers.gateway.port": 9940
}`, ep1, ep1, cfg.SSLDir, cfg.CACertLocation, cfg.CRLLocation)
	pcfg, err := ParseConfig([]byte(doc), "json")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(pcfg, WithModname("bodhi"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	scfg, _ := ParseConfig([]byte(doc), "json")
	scfg.Name = ""
	scfg.Endpoints["publisher01.example.org"] = []string{pub.Endpoint()}
	sub, err := New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	msgs := tail(t, sub, "org.fedoraproject.dev.bodhi")
	if err := pub.WaitSubscribers(ctxT(t), "update.request", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "update.request", map[string]any{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, msgs); m.Topic != "org.fedoraproject.dev.bodhi.update.request" || m.Signer != "publisher01.example.org" {
		t.Fatalf("got %q from %q", m.Topic, m.Signer)
	}
}

// An active publisher connects to the relay's inbound side; a tail of the
// relay's outbound side gets the message with its signature intact.
func TestActivePublisherThroughRelay(t *testing.T) {
	n := newTestNet(t)
	cfg := n.config("")
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	relay, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	defer func() {
		cancel()
		<-relayDone
		relay.Close()
	}()
	n.endpoints["relay_outbound"] = []string{relay.OutboundEndpoint()}

	sub := n.start("")
	msgs := tail(t, sub, "")

	pcfg := n.config("")
	pcfg.Active = true
	pcfg.Name = "relay_inbound"
	pcfg.RelayInbound = []string{relay.InboundEndpoint()}
	pcfg.Certnames["shell."+shortHostname()] = "publisher01.example.org"
	pub, err := New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The relay may drop what arrives before the tail's subscription
	// reached it: keep publishing until one comes through.
	var m *Message
	waitFor(t, "a message through the relay", func() bool {
		if _, err := pub.Publish(ctxT(t), "log", map[string]any{"log": "hi"}); err != nil {
			t.Fatal(err)
		}
		select {
		case m = <-msgs:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	if m.Signer != "publisher01.example.org" || m.Name != "relay_outbound" {
		t.Fatalf("signer %q name %q", m.Signer, m.Name)
	}
}

// WaitSubscribers counts the subscriptions the publishing socket has
// applied: up when a tail subscribes, down when it goes.
func TestWaitSubscribers(t *testing.T) {
	n := newTestNet(t)
	pub := n.start("publisher01.example.org", WithModname("app"))
	sub := n.start("")
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := pub.WaitSubscribers(short, "x", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("nobody subscribed: err = %v", err)
	}
	s1, err := sub.Subscribe(ctxT(t), "org.example.dev.app")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := sub.Subscribe(ctxT(t), "org.example.dev.app.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctxT(t), "x.y", 2); err != nil {
		t.Fatal(err)
	}
	if got := pub.Subscribers("y"); got != 1 {
		t.Errorf("subscribers to app.y = %d, want 1", got)
	}
	s2.Close()
	waitFor(t, "the unsubscription", func() bool { return pub.Subscribers("x") == 1 })
	s1.Close()
	waitFor(t, "no subscribers", func() bool { return pub.Subscribers("x") == 0 })
	pub.Close()
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: err = %v", err)
	}
}

// An address that cannot be used is skipped, as fedmsg skips hosts it
// cannot resolve; the others are tailed.
func TestSubscribeSkipsBadEndpoint(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	pub := n.start("publisher01.example.org")
	sub := n.start("")
	sub.cfg.Endpoints["broken"] = []string{"tcp://no-port-here", "bogus://x"}
	s, err := sub.Subscribe(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Endpoints() != 1 || s.Ready() != 1 {
		t.Fatalf("endpoints %d ready %d, want only the publisher's", s.Endpoints(), s.Ready())
	}
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}
	pub.Publish(ctxT(t), "x", nil)
	if m, err := s.Next(ctxT(t)); err != nil || m.Name != "publisher01.example.org" {
		t.Fatalf("Next: %v %v", m, err)
	}

	sub.cfg.Endpoints = map[string][]string{"broken": {"bogus://x"}}
	if _, err := sub.Subscribe(ctxT(t), ""); !errors.Is(err, ErrConfig) {
		t.Fatalf("no usable endpoint: err = %v", err)
	}
}

// In passive mode the subscription binds and an active publisher
// connects to it.
func TestPassiveSubscription(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	sub := n.start("")
	s, err := sub.Subscribe(ctxT(t), "", WithPassive(), WithEndpoints("tcp://127.0.0.1:*"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ep, err := s.socks[0].GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.config("")
	cfg.Active = true
	cfg.RelayInbound = []string{ep}
	pub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// A bound SUB hands its subscription to a new peer only while its
	// reader is inside ZeroMQ: read first, then wait for it.
	got := make(chan *Message, 1)
	go func() {
		m, err := s.Next(ctxT(t))
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "x", nil); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m == nil || !strings.HasSuffix(m.Topic, ".x") {
		t.Fatalf("Next: %v", m)
	}
}

// The dedupe set forgets the oldest msg_id first, and keeps ACKs only for
// the most recent ones.
func TestIDSet(t *testing.T) {
	s := newIDSet(ackKeep + 4)
	ack := &outgoing{msgID: "ack"}
	for i := range ackKeep + 4 {
		id := strconv.Itoa(i)
		if !s.add(id) {
			t.Fatalf("%s: not new", id)
		}
		s.setAck(id, ack)
	}
	if s.add("0") || !s.has("0") {
		t.Fatal("0 forgotten too early")
	}
	if s.ack("0") != nil || s.ack("3") != nil || s.ack("4") != ack || s.ack(strconv.Itoa(ackKeep+3)) != ack {
		t.Fatal("ACKs kept for the wrong ids")
	}
	if !s.add("new") || s.has("0") || !s.has("1") {
		t.Fatal("the oldest id was not the one forgotten")
	}
	s.setAck("0", ack)
	if s.ack("0") != nil {
		t.Fatal("an ACK was kept for a forgotten id")
	}

	// Few ids of a publisher's choosing may be huge: the oldest are
	// forgotten by bytes too, whatever the count allows.
	s = newIDSet(4096)
	huge := func(c string) string { return strings.Repeat(c, dedupeBytes/4+1) }
	for _, c := range []string{"a", "b", "c", "d"} {
		s.add(huge(c))
	}
	if s.has(huge("a")) || !s.has(huge("b")) || !s.has(huge("d")) || s.bytes > dedupeBytes {
		t.Fatalf("holding %d bytes of ids: not forgotten oldest first by bytes", s.bytes)
	}

	// An id cut from a body must not keep the body alive.
	body := strings.Repeat("x", 1<<20) + "2026-id"
	id := body[1<<20:]
	s.add(id)
	for _, kept := range s.ring {
		if kept == id && unsafe.StringData(kept) == unsafe.StringData(id) {
			t.Fatal("the set kept the body's memory, not a copy of the id")
		}
	}
}

// A bind or connect that fails when it is made (here: a port another
// socket holds) is an *EndpointError naming the address, not bad
// configuration: the same config works once the port is free. Only a
// malformed address is still a *ConfigError on endpoints.
func TestEndpointFailureIsNotConfigError(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	b := n.start("")
	holder, err := b.Subscribe(ctxT(t), "", WithPassive(), WithEndpoints("tcp://127.0.0.1:*"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	taken, err := holder.socks[0].GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}

	_, err = b.Subscribe(ctxT(t), "", WithPassive(), WithEndpoints(taken))
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Op != "bind" || ee.Endpoint != taken || !strings.Contains(err.Error(), taken) {
		t.Fatalf("binding a taken port: %v, want an *EndpointError naming bind %s", err, taken)
	}
	if !errors.Is(err, ErrEndpoint) || errors.Is(err, ErrConfig) {
		t.Errorf("binding a taken port: %v matches ErrEndpoint %v, ErrConfig %v; want true, false",
			err, errors.Is(err, ErrEndpoint), errors.Is(err, ErrConfig))
	}
	if strings.Count(err.Error(), "gilmsg:") != 1 {
		t.Errorf("binding a taken port: %q, want one gilmsg: prefix", err)
	}

	_, err = b.Subscribe(ctxT(t), "", WithEndpoints("bogus://x"))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "endpoints" || !errors.As(err, &ee) || strings.Count(err.Error(), "gilmsg:") != 1 {
		t.Errorf("a malformed address: %v, want a *ConfigError on endpoints around an *EndpointError, one gilmsg: prefix", err)
	}
}
