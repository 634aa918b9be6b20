package gilmsg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/zbench"
	zmq "github.com/pebbe/zmq4"
)

// relayTestConfig binds both relay sockets on free loopback ports.
func relayTestConfig() *Config {
	cfg := DefaultConfig()
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	cfg.ZMQLinger = 0
	cfg.ZMQReconnectIvl = 10
	cfg.ZMQReconnectIvlMax = 50
	return cfg
}

func testRelay(t testing.TB, cfg *Config) *Relay {
	t.Helper()
	r, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("relay close: %v", err)
		}
	})
	return r
}

// runRelay runs r until the test ends and returns where Run's result goes.
func runRelay(t *testing.T, r *Relay) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(cancel)
	return cancel, errc
}

func waitErr(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// relayClients connects a publisher (an XPUB, so it knows when the relay
// has subscribed) to the relay's inbound side and a subscriber to its
// outbound side, and returns once a probe has made it through, the
// subscriber skipping "probe" messages from then on.
type relayClients struct {
	pub, sub *zmq.Socket
	probes   int // probes sent: each one is forwarded
}

func newRelayClients(t *testing.T, zctx *zmq.Context, r *Relay) *relayClients {
	t.Helper()
	pub, err := testXPub(zctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.Connect(r.InboundEndpoint()); err != nil {
		t.Fatal(err)
	}
	tr := newSubscriptionTracker()
	pumpSubscriptions(t, pub, tr, func() bool { return tr.Count("") == 1 })

	sub := testSocket(t, zctx, zmq.SUB, testSockOpts())
	sub.SetSubscribe("")
	if err := sub.Connect(r.OutboundEndpoint()); err != nil {
		t.Fatal(err)
	}
	c := &relayClients{pub: pub, sub: sub}
	// The relay reads no subscriptions from its outbound side: no signal
	// says when it has ours, so probe until one arrives.
	poller := zmq.NewPoller()
	poller.Add(sub, zmq.POLLIN)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := pub.SendMessage("probe", "{}"); err != nil {
			t.Fatal(err)
		}
		c.probes++
		polled, err := poller.Poll(10 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(polled) > 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("no probe came through the relay")
		}
	}
}

// recv returns the next message that is not a probe.
func (c *relayClients) recv(t *testing.T) [][]byte {
	t.Helper()
	c.sub.SetRcvtimeo(5 * time.Second)
	for {
		msg, err := c.sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(msg) != 2 || string(msg[0]) != "probe" {
			return msg
		}
	}
}

func TestRelayForwardsUnchanged(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	r := testRelay(t, relayTestConfig())
	if r.subH == nil || r.pubH == nil {
		t.Fatal("no socket handles: this test would not cover the one-call forward")
	}
	cancel, errc := runRelay(t, r)
	c := newRelayClients(t, zctx, r)

	body := []byte(`{"msg": {"x": "` + strings.Repeat("é", 500) + `"}, "signature": "c2ln\nbmF0dXJl\n"}`)
	want := make([][][]byte, 100)
	for i := range want {
		want[i] = [][]byte{fmt.Appendf(nil, "org.fedoraproject.dev.test.%d", i), body}
	}
	want[10] = [][]byte{[]byte("org.fedoraproject.dev.empty"), {}}
	want[20] = [][]byte{[]byte("binary"), {0, 1, 2, 0xff, 0}}
	want[30] = [][]byte{[]byte("three"), []byte("frames"), []byte("here")}
	want[40] = [][]byte{[]byte("just one frame")}
	for _, m := range want {
		if _, err := c.pub.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range want {
		got := c.recv(t)
		if len(got) != len(w) {
			t.Fatalf("message %d: %d frames, want %d", i, len(got), len(w))
		}
		for j := range w {
			if !bytes.Equal(got[j], w[j]) {
				t.Fatalf("message %d frame %d = %q, want %q", i, j, got[j], w[j])
			}
		}
	}
	// The count is bumped just after the send: wait for it, briefly.
	wantStats := RelayStats{Forwarded: uint64(c.probes + len(want)), NotTwoFrames: 2}
	for deadline := time.Now().Add(5 * time.Second); r.Stats() != wantStats; {
		if time.Now().After(deadline) {
			t.Fatalf("Stats() = %+v, want %+v", r.Stats(), wantStats)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := waitErr(t, errc, "Run"); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestRelayLifecycle(t *testing.T) {
	t.Run("close while run is blocked", func(t *testing.T) {
		checkLeaks(t)
		r := testRelay(t, relayTestConfig())
		_, errc := runRelay(t, r)
		waitFor(t, "Run to hold the sockets", func() bool { return len(r.run) > 0 })
		start := time.Now()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := waitErr(t, errc, "Run"); !errors.Is(err, ErrClosed) {
			t.Errorf("Run = %v, want ErrClosed", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close took %v", d)
		}
	})
	t.Run("run twice, close twice", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		r := testRelay(t, relayTestConfig())
		cancel, errc := runRelay(t, r)
		cancel()
		if err := waitErr(t, errc, "first Run"); !errors.Is(err, context.Canceled) {
			t.Fatalf("first Run = %v", err)
		}
		// A second Run picks up where the first stopped.
		_, errc = runRelay(t, r)
		c := newRelayClients(t, zctx, r)
		c.pub.SendMessage("after", "restart")
		if got := c.recv(t); string(got[0]) != "after" {
			t.Errorf("received %q", got)
		}
		for range 2 {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := waitErr(t, errc, "second Run"); !errors.Is(err, ErrClosed) {
			t.Errorf("second Run = %v, want ErrClosed", err)
		}
		if err := r.Run(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}
		if r.Stats().Forwarded == 0 {
			t.Error("Stats lost after Close")
		}
	})
	t.Run("concurrent run waits its turn", func(t *testing.T) {
		checkLeaks(t)
		r := testRelay(t, relayTestConfig())
		_, errc := runRelay(t, r)
		waitFor(t, "the first Run to hold the sockets", func() bool { return len(r.run) > 0 })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := r.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second Run = %v, want DeadlineExceeded", err)
		}
		r.Close()
		if err := waitErr(t, errc, "Run"); !errors.Is(err, ErrClosed) {
			t.Errorf("Run = %v, want ErrClosed", err)
		}
	})
}

// TestRelayStopsUnderFlood: with messages always queued, Run still looks
// at Close and ctx between batches (relayBatch).
func TestRelayStopsUnderFlood(t *testing.T) {
	for _, how := range []string{"close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			checkLeaks(t)
			zctx := testZCtx(t)
			r := testRelay(t, relayTestConfig())
			cancel, errc := runRelay(t, r)
			c := newRelayClients(t, zctx, r)

			stop := make(chan struct{})
			flooded := make(chan error, 1)
			go func() { // owns c.pub from here
				for {
					select {
					case <-stop:
						flooded <- nil
						return
					default:
					}
					if _, err := c.pub.SendMessage("flood", "x"); err != nil {
						flooded <- err
						return
					}
				}
			}()
			defer func() {
				close(stop)
				if err := <-flooded; err != nil {
					t.Error(err)
				}
			}()
			busy := uint64(c.probes + 8*relayBatch)
			waitFor(t, "the flood to pass through the relay", func() bool { return r.Stats().Forwarded > busy })

			want := ErrClosed
			if how == "close" {
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				cancel()
				want = context.Canceled
			}
			if err := waitErr(t, errc, "Run"); !errors.Is(err, want) {
				t.Errorf("Run = %v, want %v", err, want)
			}
		})
	}
}

// TestRelayRunResumesMidBatch: a Run that stops with messages still
// queued leaves no signal for them (ZMQ_FD is edge-triggered, and was
// consumed); the next Run must read them anyway.
func TestRelayRunResumesMidBatch(t *testing.T) {
	checkLeaks(t)
	held, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	hooks := &Hooks{MessageIn: func(topic string) {
		if topic == "held" {
			hold.Do(func() { close(held); <-release })
		}
	}}
	// Inbound over inproc, from a socket in the relay's own context: an
	// inproc send queues the message at the relay before it returns.
	cfg := relayTestConfig()
	cfg.RelayInbound = []string{inprocAddr("relay-in")}
	cfg.HighWaterMark = 100 * relayBatch // the burst below goes out whole
	r, err := NewRelay(cfg, WithRelayHooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // after the clients' sockets are closed
	cancel, errc := runRelay(t, r)
	c := newRelayClients(t, r.zctx, r)

	// Run stops in the hook of the first message while the rest, more
	// than one batch, queue up behind it.
	const n = 4 * relayBatch
	if _, err := c.pub.SendMessage("held", "0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the first message never reached the relay")
	}
	for i := 1; i < n; i++ {
		if _, err := c.pub.SendMessage("queued", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	close(release)
	if err := waitErr(t, errc, "first Run"); !errors.Is(err, context.Canceled) {
		t.Fatalf("first Run = %v, want context.Canceled", err)
	}
	// At most one batch of ours: every probe was queued before "held", so
	// the first Run forwarded them all.
	if got := r.Stats().Forwarded - uint64(c.probes); got > relayBatch {
		t.Fatalf("the first Run forwarded %d of ours, want at most a batch (%d)", got, relayBatch)
	}

	cancel, errc = runRelay(t, r)
	for i := range n {
		got := c.recv(t)
		if len(got) != 2 || string(got[1]) != strconv.Itoa(i) {
			t.Fatalf("message %d = %q", i, got)
		}
	}
	cancel()
	if err := waitErr(t, errc, "second Run"); !errors.Is(err, context.Canceled) {
		t.Errorf("second Run = %v, want context.Canceled", err)
	}
}

// TestIdleRelaysHoldNoThread: a Run waiting for messages holds no OS
// thread (it waits in Go's netpoller; in a cgo zmq_poll it held one). What
// each relay does hold: its zmq context's I/O thread and reaper.
func TestIdleRelaysHoldNoThread(t *testing.T) {
	if !inFreshProcess(t) {
		return
	}
	const n = 64
	zctx := testZCtx(t)
	for range n {
		r := testRelay(t, relayTestConfig())
		runRelay(t, r)
		newRelayClients(t, zctx, r) // a probe came through: Run is in its loop
	}
	// Go's own threads: GOMAXPROCS, sysmon, the GC's, a few spare.
	maxThreads := 2*(n+1) + runtime.GOMAXPROCS(0) + 16
	threads := procStatus(t, "Threads")
	t.Logf("%d idle relays: %d OS threads", n, threads)
	if threads > maxThreads {
		t.Errorf("%d OS threads with %d idle relays, want at most %d", threads, n, maxThreads)
	}
}

func TestNewRelayErrors(t *testing.T) {
	checkLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := "tcp://" + l.Addr().String()

	for _, tc := range []struct {
		name     string
		cfg      func() *Config
		is       error
		endpoint string // the NoEndpointError's name
	}{
		{"nil config", func() *Config { return nil }, ErrConfig, ""},
		{"no relay_outbound", func() *Config {
			c := relayTestConfig()
			c.Endpoints = map[string][]string{}
			return c
		}, ErrNoEndpoint, "relay_outbound"},
		{"inbound taken", func() *Config {
			c := relayTestConfig()
			c.RelayInbound = []string{taken}
			return c
		}, ErrNoEndpoint, "relay_inbound"},
		{"outbound taken", func() *Config {
			c := relayTestConfig()
			c.Endpoints["relay_outbound"] = []string{taken}
			return c
		}, ErrNoEndpoint, "relay_outbound"},
		{"bad socket option", func() *Config {
			c := relayTestConfig()
			c.HighWaterMark = -1
			return c
		}, ErrConfig, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRelay(tc.cfg())
			if r != nil || !errors.Is(err, tc.is) {
				t.Fatalf("NewRelay = %v, %v; want %v", r, err, tc.is)
			}
			var ne *NoEndpointError
			if tc.endpoint != "" && (!errors.As(err, &ne) || ne.Name != tc.endpoint) {
				t.Errorf("err = %v, want a NoEndpointError for %q", err, tc.endpoint)
			}
		})
	}
}

// BenchmarkRawZMQPubSub is the baseline for the bus's benchmarks: plain
// pebbe/zmq4, PUB to SUB over loopback TCP, fedmsg's two frames with a
// 1 KB body, no limits on queues so nothing is dropped.
func BenchmarkRawZMQPubSub(b *testing.B) {
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	defer zctx.Term()
	pub, _ := zctx.NewSocket(zmq.PUB)
	sub, _ := zctx.NewSocket(zmq.SUB)
	defer pub.Close()
	defer sub.Close()
	pub.SetLinger(minSendLingerMS * time.Millisecond)
	sub.SetLinger(0)
	for _, s := range []*zmq.Socket{pub, sub} {
		s.SetSndhwm(0)
		s.SetRcvhwm(0)
	}
	if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	ep, _ := pub.GetLastEndpoint()
	sub.SetSubscribe("")
	sub.Connect(ep)
	benchPubSub(b, pub, sub)
}

// BenchmarkRelay is the same traffic through a Relay: PUB → relay → SUB.
func BenchmarkRelay(b *testing.B) {
	r := testRelay(b, relayTestConfig())
	zbench.RunUntilEnd(b, r.Run)
	pub, sub := benchSockets(b)
	pub.Connect(r.InboundEndpoint())
	sub.Connect(r.OutboundEndpoint())
	benchPubSub(b, pub, sub)
}

// BenchmarkRelayRoundTrip sends one message at a time through the relay
// and waits for it: the relay is idle between messages, so each one wakes
// it, where BenchmarkRelay mostly finds it busy.
func BenchmarkRelayRoundTrip(b *testing.B) {
	r := testRelay(b, relayTestConfig())
	zbench.RunUntilEnd(b, r.Run)
	pub, sub := benchSockets(b)
	pub.Connect(r.InboundEndpoint())
	sub.Connect(r.OutboundEndpoint())
	zbench.Probe(b, pub, sub)
	topic, body := "org.fedoraproject.prod.bench.message", bytes.Repeat([]byte("x"), 1024)
	b.SetBytes(int64(len(topic) + len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := pub.SendMessage(topic, body); err != nil {
			b.Fatal(err)
		}
		for {
			msg, err := sub.RecvMessageBytes(0)
			if err != nil {
				b.Fatal(err)
			}
			if string(msg[0]) != "probe" {
				break
			}
		}
	}
}

// benchSockets returns a PUB and a SUB subscribed to everything, on a
// context of their own, all closed when b ends.
func benchSockets(b *testing.B) (pub, sub *zmq.Socket) {
	zctx, err := newContext(1)
	if err != nil {
		b.Fatal(err)
	}
	o := testSockOpts()
	pub, _ = newSocket(zctx, zmq.PUB, o)
	sub, _ = newSocket(zctx, zmq.SUB, o)
	sub.SetSubscribe("")
	b.Cleanup(func() {
		pub.Close()
		sub.Close()
		zctx.Term()
	})
	return pub, sub
}

// benchPubSub times b.N messages of 1 kB through pub and sub.
func benchPubSub(b *testing.B, pub, sub *zmq.Socket) {
	b.Helper()
	zbench.PubSub(b, pub, sub, bytes.Repeat([]byte("x"), 1024))
}

// testXPub is an XPUB as newXPub made them before their queues were
// capped: verboser, no limit, dropping nothing and never waiting, so that
// test peers that flood do not block.
func testXPub(zctx *zmq.Context) (*zmq.Socket, error) {
	s, err := newSocket(zctx, zmq.XPUB, testSockOpts())
	if err != nil {
		return nil, err
	}
	if err := s.SetXpubVerboser(1); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
