package gilmsg

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

// checkLeaks verifies, after every other cleanup, that the test left no
// goroutine behind (other tests' leftovers are not its business). Call it
// first so that its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// testSockOpts keeps tests fast: no linger, quick reconnects.
func testSockOpts() sockOpts {
	o := sockOptsFromConfig(DefaultConfig())
	o.LingerMS = 0
	o.ReconnectIvlMS = 10
	o.ReconnectIvlMaxMS = 50
	return o
}

// testZCtx returns a context terminated when the test ends, after the
// sockets the test made (cleanups run last-in first-out).
func testZCtx(t *testing.T) *zmq.Context {
	t.Helper()
	zctx, err := newContext(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := zctx.Term(); err != nil {
			t.Errorf("term: %v", err)
		}
	})
	return zctx
}

func testSocket(t *testing.T, zctx *zmq.Context, typ zmq.Type, o sockOpts) *zmq.Socket {
	t.Helper()
	s, err := newSocket(zctx, typ, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMonitor(t *testing.T, zctx *zmq.Context, s *zmq.Socket, opts ...monitorOption) *connMonitor {
	t.Helper()
	m, err := newConnMonitor(zctx, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func bindLoopback(t *testing.T, s *zmq.Socket) string {
	t.Helper()
	ep, err := bindFirst(s, "test", []string{"tcp://127.0.0.1:*"})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// pumpSubscriptions plays the XPUB owner's loop until cond holds.
func pumpSubscriptions(t *testing.T, xpub *zmq.Socket, tr *subscriptionTracker, cond func() bool) {
	t.Helper()
	poller := zmq.NewPoller()
	poller.Add(xpub, zmq.POLLIN)
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met; subscriptions %v", tr.Subscriptions())
		}
		if _, err := poller.Poll(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := readSubscriptions(xpub, tr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBindAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tcp://bodhi01.example.org:3000", "tcp://*:3000"},
		{"tcp://localhost:3000", "tcp://*:3000"},
		{"tcp://10.1.2.3:3000", "tcp://*:3000"},
		{"tcp://[2001:db8::1]:3000", "tcp://*:3000"},
		{"tcp://*:3000", "tcp://*:3000"},
		{"tcp://127.0.0.1:3000", "tcp://127.0.0.1:3000"},
		{"tcp://127.0.0.2:3000", "tcp://127.0.0.2:3000"},
		{"tcp://[::1]:3000", "tcp://[::1]:3000"},
		{"tcp://10.1.2.3:*", "tcp://10.1.2.3:*"},
		{"tcp://noport", "tcp://noport"},
		{"ipc:///tmp/bus.sock", "ipc:///tmp/bus.sock"},
		{"inproc://x", "inproc://x"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := bindAddress(tc.in); got != tc.want {
				t.Errorf("bindAddress(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestBindFirst(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	taken := bindLoopback(t, testSocket(t, zctx, zmq.PUB, testSockOpts()))
	taken2 := bindLoopback(t, testSocket(t, zctx, zmq.PUB, testSockOpts()))

	t.Run("first taken, second used", func(t *testing.T) {
		s := testSocket(t, zctx, zmq.PUB, testSockOpts())
		ep, err := bindFirst(s, "bodhi", []string{taken, "tcp://127.0.0.1:*"})
		if err != nil {
			t.Fatal(err)
		}
		if ep == taken || !strings.HasPrefix(ep, "tcp://127.0.0.1:") || strings.HasSuffix(ep, ":*") {
			t.Errorf("bound %q, want a fresh 127.0.0.1 port", ep)
		}
	})
	t.Run("all taken", func(t *testing.T) {
		s := testSocket(t, zctx, zmq.PUB, testSockOpts())
		_, err := bindFirst(s, "bodhi", []string{taken, taken2})
		if !errors.Is(err, ErrNoEndpoint) {
			t.Fatalf("err = %v, want ErrNoEndpoint", err)
		}
		var ne *NoEndpointError
		if !errors.As(err, &ne) {
			t.Fatalf("err %T is not *NoEndpointError", err)
		}
		if ne.Name != "bodhi" || len(ne.Tried) != 2 || ne.Tried[0] != taken || ne.Tried[1] != taken2 || len(ne.Errs) != 2 {
			t.Errorf("got %+v", ne)
		}
		for _, want := range []string{`"bodhi"`, taken + " (address already in use)", taken2} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
	})
	t.Run("host is bound as *", func(t *testing.T) {
		s := testSocket(t, zctx, zmq.PUB, testSockOpts())
		port := freePort(t)
		// The host is never resolved: it only says how peers reach us.
		ep, err := bindFirst(s, "bodhi", []string{"tcp://bodhi01.invalid:" + port})
		if err != nil {
			t.Fatal(err)
		}
		if want := "tcp://0.0.0.0:" + port; ep != want {
			t.Errorf("bound %q, want %q", ep, want)
		}
	})
	t.Run("no address", func(t *testing.T) {
		s := testSocket(t, zctx, zmq.PUB, testSockOpts())
		_, err := bindFirst(s, "bodhi", nil)
		var ne *NoEndpointError
		if !errors.As(err, &ne) || len(ne.Tried) != 0 || !strings.Contains(err.Error(), "no address configured") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("invalid address", func(t *testing.T) {
		s := testSocket(t, zctx, zmq.PUB, testSockOpts())
		_, err := bindFirst(s, "bodhi", []string{"tcp://noport"})
		if !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), "tcp://noport (") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestNewSocketOptions(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	base := sockOptsFromConfig(DefaultConfig())
	with := func(f func(*sockOpts)) sockOpts { o := base; f(&o); return o }
	for _, tc := range []struct {
		name   string
		o      sockOpts
		linger time.Duration
		maxMsg int64
		rcvHWM int    // a SUB holds at most 1 GiB of max_message_size at high_water_mark 0
		badKey string // the ConfigError's key when zmq refuses
	}{
		{name: "fedmsg defaults", o: base, linger: time.Second, maxMsg: DefaultMaxMessageSize, rcvHWM: 128},
		{name: "infinite linger is bounded", o: with(func(o *sockOpts) { o.LingerMS = -1 }), linger: time.Second, maxMsg: DefaultMaxMessageSize, rcvHWM: 128},
		{name: "max message size", o: with(func(o *sockOpts) { o.MaxMsgSize = 4096 }), linger: time.Second, maxMsg: 4096, rcvHWM: 1 << 30 / 4096},
		{name: "hwm set", o: with(func(o *sockOpts) { o.HWM = 5000 }), linger: time.Second, maxMsg: DefaultMaxMessageSize, rcvHWM: 5000},
		{name: "negative hwm", o: with(func(o *sockOpts) { o.HWM = -5 }), badKey: "high_water_mark"},
		{name: "bad keepalive", o: with(func(o *sockOpts) { o.TCPKeepalive = 7 }), badKey: "zmq_tcp_keepalive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSocket(zctx, zmq.SUB, tc.o)
			if tc.badKey != "" {
				var ce *ConfigError
				if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) || ce.Key != tc.badKey {
					t.Fatalf("err = %v, want a ConfigError for %q", err, tc.badKey)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			get := func(f func() (int, error)) int {
				v, err := f()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			for name, pair := range map[string][2]int{
				"sndhwm":         {get(s.GetSndhwm), tc.o.HWM},
				"rcvhwm":         {get(s.GetRcvhwm), tc.rcvHWM},
				"keepalive":      {get(s.GetTcpKeepalive), tc.o.TCPKeepalive},
				"keepalive cnt":  {get(s.GetTcpKeepaliveCnt), tc.o.KeepaliveCnt},
				"keepalive idle": {get(s.GetTcpKeepaliveIdle), tc.o.KeepaliveIdle},
				"keepalive intv": {get(s.GetTcpKeepaliveIntvl), tc.o.KeepaliveIntvl},
			} {
				if pair[0] != pair[1] {
					t.Errorf("%s = %d, want %d", name, pair[0], pair[1])
				}
			}
			if l, _ := s.GetLinger(); l != tc.linger {
				t.Errorf("linger = %v, want %v", l, tc.linger)
			}
			if r, _ := s.GetReconnectIvl(); r != time.Duration(tc.o.ReconnectIvlMS)*time.Millisecond {
				t.Errorf("reconnect ivl = %v", r)
			}
			if r, _ := s.GetReconnectIvlMax(); r != time.Duration(tc.o.ReconnectIvlMaxMS)*time.Millisecond {
				t.Errorf("reconnect ivl max = %v", r)
			}
			if m, _ := s.GetMaxmsgsize(); m != tc.maxMsg {
				t.Errorf("maxmsgsize = %d, want %d", m, tc.maxMsg)
			}
		})
	}
}

// TestNewSocketLingerFloor: a linger of 0 is kept only where the socket
// sends nothing but subscriptions (see minSendLingerMS).
func TestNewSocketLingerFloor(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	for _, tc := range []struct {
		typ    zmq.Type
		asked  int
		linger time.Duration
	}{
		{zmq.SUB, 0, 0},
		{zmq.XSUB, 0, 0},
		{zmq.PUB, 0, minSendLingerMS * time.Millisecond},
		{zmq.XPUB, 0, minSendLingerMS * time.Millisecond},
		{zmq.REQ, 0, minSendLingerMS * time.Millisecond},
		{zmq.PUB, 500, 500 * time.Millisecond},
		{zmq.PUB, -1, defaultLingerMS * time.Millisecond},
		{zmq.SUB, -1, defaultLingerMS * time.Millisecond},
	} {
		o := testSockOpts()
		o.LingerMS = tc.asked
		s, err := newSocket(zctx, tc.typ, o)
		if err != nil {
			t.Fatal(err)
		}
		if l, _ := s.GetLinger(); l != tc.linger {
			t.Errorf("%v asked for linger %d ms: %v, want %v", tc.typ, tc.asked, l, tc.linger)
		}
		s.Close()
	}
}

func TestCloseAll(t *testing.T) {
	checkLeaks(t)
	zctx, err := newContext(2)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newSocket(zctx, zmq.PUB, testSockOpts())
	b, _ := newSocket(zctx, zmq.SUB, testSockOpts())
	bindLoopback(t, a)
	done := make(chan error, 1)
	go func() { done <- closeAll(zctx, a, nil, b) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closeAll hung")
	}
	if _, err := zctx.NewSocket(zmq.PUB); err == nil {
		t.Error("context still usable after closeAll")
	}
}

func TestConnMonitor(t *testing.T) {
	t.Run("sub and pub see the handshake", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		pub := testSocket(t, zctx, zmq.PUB, testSockOpts())
		pubMon := testMonitor(t, zctx, pub)
		ep := bindLoopback(t, pub)
		sub := testSocket(t, zctx, zmq.SUB, testSockOpts())
		subMon := testMonitor(t, zctx, sub)
		if err := sub.Connect(ep); err != nil {
			t.Fatal(err)
		}
		for name, m := range map[string]*connMonitor{"sub": subMon, "pub": pubMon} {
			if err := m.WaitConnected(waitCtx(t, 5*time.Second), 1); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := m.Endpoints(); got[ep] != 1 || len(got) != 1 {
				t.Errorf("%s endpoints = %v, want %s: 1", name, got, ep)
			}
		}
		// The peer leaving takes the count down again.
		sub.Close()
		ctx := waitCtx(t, 5*time.Second)
		for pubMon.Connected() != 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("pub still counts %d connections", pubMon.Connected())
			case <-time.After(5 * time.Millisecond):
			}
		}
		// Closing the monitored socket stops its monitor (once libzmq's
		// MONITOR_STOPPED event is read: it may still count the peer
		// until then).
		select {
		case <-subMon.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the monitor did not stop with its socket")
		}
		if err := subMon.WaitConnected(waitCtx(t, 5*time.Second), 1); !errors.Is(err, ErrClosed) {
			t.Errorf("after the socket closed: %v, want ErrClosed", err)
		}
	})
	t.Run("times out when nothing listens", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		sub := testSocket(t, zctx, zmq.SUB, testSockOpts())
		m := testMonitor(t, zctx, sub)
		if err := sub.Connect("tcp://127.0.0.1:" + freePort(t)); err != nil {
			t.Fatal(err)
		}
		err := m.WaitConnected(waitCtx(t, 100*time.Millisecond), 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		if m.Connected() != 0 {
			t.Errorf("Connected() = %d", m.Connected())
		}
	})
	t.Run("close releases waiters, twice", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		sub := testSocket(t, zctx, zmq.SUB, testSockOpts())
		m := testMonitor(t, zctx, sub)
		errc := make(chan error)
		go func() { errc <- m.WaitConnected(context.Background(), 1) }()
		m.Close()
		m.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("err = %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WaitConnected not released by Close")
		}
	})
	t.Run("an ordinary disconnect is not lost", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		pub := testSocket(t, zctx, zmq.PUB, testSockOpts())
		ep := bindLoopback(t, pub)
		sub := testSocket(t, zctx, zmq.SUB, testSockOpts())
		lost := make(chan string, 4)
		m := testMonitor(t, zctx, sub, withLostHook(func(ep string) { lost <- ep }))
		if err := sub.Connect(ep); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConnected(waitCtx(t, 5*time.Second), 1); err != nil {
			t.Fatal(err)
		}
		pub.Close() // libzmq reconnects by itself: nothing to repair
		select {
		case got := <-lost:
			t.Fatalf("lost hook called for %q after an ordinary close", got)
		case <-time.After(3 * lostGrace):
		}
	})
	t.Run("oversize message drops the connection until reconnected", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		xpub, err := testXPub(zctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { xpub.Close() })
		ep := bindLoopback(t, xpub)
		tr := newSubscriptionTracker()

		o := testSockOpts()
		o.MaxMsgSize = 100
		sub := testSocket(t, zctx, zmq.SUB, o)
		lost := make(chan string, 4)
		m := testMonitor(t, zctx, sub, withLostHook(func(ep string) { lost <- ep }))
		sub.SetSubscribe("")
		sub.SetRcvtimeo(5 * time.Second)
		if err := sub.Connect(ep); err != nil {
			t.Fatal(err)
		}
		pumpSubscriptions(t, xpub, tr, func() bool { return tr.Count("") == 1 })
		roundTrip := func(body string) {
			t.Helper()
			if _, err := xpub.SendMessage("t", body); err != nil {
				t.Fatal(err)
			}
			if got, err := sub.RecvMessage(0); err != nil || got[1] != body {
				t.Fatalf("received %q, %v", got, err)
			}
		}
		roundTrip("small")

		xpub.SendMessage("t", strings.Repeat("x", 200))
		select {
		case got := <-lost:
			if got != ep {
				t.Errorf("lost %q, want %q", got, ep)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("lost hook not called")
		}
		if m.Connected() != 0 {
			t.Errorf("Connected() = %d after the drop", m.Connected())
		}
		pumpSubscriptions(t, xpub, tr, func() bool { return tr.Count("") == 0 })

		// The owner's remedy: connect again.
		if err := sub.Disconnect(ep); err != nil {
			t.Fatal(err)
		}
		if err := sub.Connect(ep); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConnected(waitCtx(t, 5*time.Second), 1); err != nil {
			t.Fatal(err)
		}
		pumpSubscriptions(t, xpub, tr, func() bool { return tr.Count("") == 1 })
		roundTrip("small again")
	})
}

func TestSubscriptionTracker(t *testing.T) {
	t.Run("frames", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			frames   []string
			topic    string
			matching int
			counts   map[string]int
		}{
			{"nothing", nil, "a.b", 0, map[string]int{}},
			{"subscribe all", []string{"\x01"}, "a.b", 1, map[string]int{"": 1}},
			{"prefix match", []string{"\x01a", "\x01a.b", "\x01b"}, "a.b.c", 2, map[string]int{"a": 1, "a.b": 1, "b": 1}},
			{"duplicates count", []string{"\x01a", "\x01a"}, "a", 2, map[string]int{"a": 2}},
			{"unsubscribe", []string{"\x01a", "\x01a", "\x00a"}, "a", 1, map[string]int{"a": 1}},
			{"unsubscribe to zero", []string{"\x01a", "\x00a"}, "a", 0, map[string]int{}},
			{"unknown unsubscribe", []string{"\x00zzz"}, "zzz", 0, map[string]int{}},
			{"not a subscription", []string{"", "\x02a", "hello"}, "a", 0, map[string]int{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tr := newSubscriptionTracker()
				for _, f := range tc.frames {
					want := len(f) > 0 && f[0] <= 1
					if got := tr.observe([]byte(f)); got != want {
						t.Errorf("observe(%q) = %v", f, got)
					}
				}
				if got := tr.Matching(tc.topic); got != tc.matching {
					t.Errorf("Matching(%q) = %d, want %d", tc.topic, got, tc.matching)
				}
				got := tr.Subscriptions()
				if len(got) != len(tc.counts) {
					t.Errorf("Subscriptions() = %v, want %v", got, tc.counts)
				}
				for p, c := range tc.counts {
					if got[p] != c || tr.Count(p) != c {
						t.Errorf("count %q = %d, want %d", p, got[p], c)
					}
				}
			})
		}
	})
	t.Run("wait", func(t *testing.T) {
		checkLeaks(t)
		tr := newSubscriptionTracker()
		errc := make(chan error)
		go func() { errc <- tr.WaitMatching(context.Background(), "org.x.dev.a", 2) }()
		tr.observe([]byte("\x01org.x"))
		tr.observe([]byte("\x01other"))
		tr.observe([]byte("\x01"))
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		err := tr.WaitMatching(waitCtx(t, 20*time.Millisecond), "org.x", 3)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 of 3") {
			t.Errorf("err = %v", err)
		}
		go func() { errc <- tr.WaitMatching(context.Background(), "org.x", 3) }()
		tr.close()
		tr.close()
		tr.observe([]byte("\x01late")) // after close: counted, nobody to wake
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Errorf("err = %v, want ErrClosed", err)
		}
	})
	t.Run("xpub sees a subscriber come and go", func(t *testing.T) {
		checkLeaks(t)
		zctx := testZCtx(t)
		xpub, err := testXPub(zctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { xpub.Close() })
		ep := bindLoopback(t, xpub)
		tr := newSubscriptionTracker()
		const prefix = "org.fedoraproject.dev"
		subs := make([]*zmq.Socket, 2)
		for i := range subs {
			subs[i] = testSocket(t, zctx, zmq.SUB, testSockOpts())
			subs[i].SetSubscribe(prefix)
			if err := subs[i].Connect(ep); err != nil {
				t.Fatal(err)
			}
		}
		topic := prefix + ".bodhi.update"
		pumpSubscriptions(t, xpub, tr, func() bool { return tr.Matching(topic) == 2 })
		if tr.Matching("org.fedoraproject.prod.x") != 0 {
			t.Errorf("a prefix matched an unrelated topic: %v", tr.Subscriptions())
		}
		// Once the owner has read the subscription, a send reaches the
		// subscriber: no probe, no sleep.
		if _, err := xpub.SendMessage(topic, "{}"); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			s.SetRcvtimeo(5 * time.Second)
			if got, err := s.RecvMessage(0); err != nil || got[0] != topic {
				t.Fatalf("received %q, %v", got, err)
			}
		}
		subs[0].Close()
		pumpSubscriptions(t, xpub, tr, func() bool { return tr.Matching(topic) == 1 })
	})
}

// TestCloseMidMessageNoAbort: a publisher and a subscriber that stopped
// reading, closed at the same moment while the publisher's connection
// holds half a message, over and over. With a linger of 0 libzmq aborts
// the process (see minSendLingerMS); the rounds run in a child process so
// that an abort fails this test instead of ending the run.
func TestCloseMidMessageNoAbort(t *testing.T) {
	rounds := 150
	if n, err := strconv.Atoi(os.Getenv("GILMSG_CLOSE_ROUNDS")); err == nil {
		rounds = n
	}
	if os.Getenv("GILMSG_CLOSE_MID_MESSAGE_CHILD") == "1" {
		for i := range rounds {
			closeMidMessage(t, i)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCloseMidMessageNoAbort$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GILMSG_CLOSE_MID_MESSAGE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the child closing mid-message %d times failed: %v\n%s", rounds, err, out)
	}
}

// closeMidMessage is one round, as a relay's test stopped it: a PUB
// configured with zmq_linger 0 floods a SUB and closes while its
// connection is still busy sending the flood; the SUB closes a moment
// later.
func closeMidMessage(t *testing.T, round int) {
	o := testSockOpts()
	o.HWM = 0
	var ctxs [2]*zmq.Context
	var socks [2]*zmq.Socket
	for i, typ := range []zmq.Type{zmq.PUB, zmq.SUB} {
		zctx, err := newContext(1)
		if err != nil {
			t.Fatal(err)
		}
		ctxs[i] = zctx
		if socks[i], err = newSocket(zctx, typ, o); err != nil {
			t.Fatal(err)
		}
	}
	pub, sub := socks[0], socks[1]
	ep := bindLoopback(t, sub)
	sub.SetSubscribe("")
	if err := pub.Connect(ep); err != nil {
		t.Fatal(err)
	}
	sub.SetRcvtimeo(10 * time.Millisecond)
	for { // until the subscription is applied
		pub.SendMessage("flood", "x")
		if _, err := sub.RecvMessageBytes(0); err == nil {
			break
		}
	}
	// Mostly topic: wherever the connection stops, it is likely between
	// a message's two frames.
	for range 20000 {
		pub.SendMessage("flood", "x")
	}
	pub.Close()
	time.Sleep(time.Duration(round%20) * 10 * time.Microsecond) // the gap varies
	sub.Close()
	for _, zctx := range ctxs {
		if err := zctx.Term(); err != nil {
			t.Error(err)
		}
	}
}
