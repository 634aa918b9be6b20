package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/gateway"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
	"github.com/gilmsg/gilmsg-go/internal/zbench"
)

// gatewayRig is a raw publisher on the bus, a gateway subscribed to it,
// and a plain SUB client of the gateway, probed until messages flow.
type gatewayRig struct {
	g        *gateway.Gateway
	pub, sub *zmq.Socket
	in, out  atomic.Int64 // the hooks' counts
}

func newGatewayRig(t *testing.T, hwm int) *gatewayRig {
	t.Helper()
	zctx := newZCtx(t)
	rig := &gatewayRig{}
	rig.pub = newSocket(t, zctx, zmq.PUB, 0)
	ep := bind(t, rig.pub)
	cfg := testConfig()
	cfg.Endpoints = map[string][]string{"publisher": {ep}, "relay_inbound": {"tcp://127.0.0.1:1"}}
	cfg.Extra = map[string]any{gateway.HWMKey: float64(hwm)}
	hooks := &gilmsg.Hooks{
		MessageIn:  func(string) { rig.in.Add(1) },
		MessageOut: func(string) { rig.out.Add(1) },
	}
	var err error
	rig.g, err = gateway.New(cfg, gateway.WithBind("tcp://127.0.0.1:*"), gateway.WithRelayOptions(gilmsg.WithRelayHooks(hooks)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.g.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- rig.g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := waitErr(t, errc, "Run"); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	})
	if got := rig.g.Sources(); got != 1 {
		t.Errorf("Sources() = %d, want 1 (relay_inbound is not a source)", got)
	}
	rig.sub = rig.client(t, zctx, 0)
	return rig
}

// client connects a SUB to the gateway and returns once a probe reached it.
func (rig *gatewayRig) client(t *testing.T, zctx *zmq.Context, hwm int) *zmq.Socket {
	t.Helper()
	sub := newSocket(t, zctx, zmq.SUB, hwm)
	sub.SetSubscribe("")
	if err := sub.Connect(rig.g.Endpoint()); err != nil {
		t.Fatal(err)
	}
	poller := zmq.NewPoller()
	poller.Add(sub, zmq.POLLIN)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := rig.pub.SendMessage("probe", "{}"); err != nil {
			t.Fatal(err)
		}
		polled, err := poller.Poll(10 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(polled) > 0 {
			return sub
		}
		if time.Now().After(deadline) {
			t.Fatal("no probe came through the gateway")
		}
	}
}

func recvNonProbe(t *testing.T, sub *zmq.Socket) [][]byte {
	t.Helper()
	sub.SetRcvtimeo(10 * time.Second)
	for {
		msg, err := sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(msg) != 2 || string(msg[0]) != "probe" {
			return msg
		}
	}
}

func TestGatewayForwardsBytesUnchecked(t *testing.T) {
	testenv.CheckLeaks(t)
	rig := newGatewayRig(t, 0)
	want := [][][]byte{
		// Not validated: a signature that cannot be right goes through.
		{[]byte("org.example.dev.test.a"), []byte(`{"msg": {"x": "é"}, "signature": "bm9wZQ==\n", "topic": "org.example.dev.test.a"}`)},
		{[]byte("binary"), {0, 1, 2, 0xff, 0}},
		{[]byte("three"), []byte("frames"), []byte("here")},
		{[]byte("org.example.dev.test.big"), []byte(strings.Repeat("x", 1<<20))},
	}
	for _, m := range want {
		if _, err := rig.pub.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range want {
		got := recvNonProbe(t, rig.sub)
		if len(got) != len(w) {
			t.Fatalf("message %d: %d frames, want %d", i, len(got), len(w))
		}
		for j := range w {
			if !bytes.Equal(got[j], w[j]) {
				t.Fatalf("message %d frame %d differs", i, j)
			}
		}
	}
	testenv.WaitFor(t, "the hooks to count every forwarded message", func() bool {
		st := rig.g.Stats()
		return st.NotTwoFrames == 1 && rig.in.Load() == int64(st.Forwarded) && rig.out.Load() == int64(st.Forwarded)
	})
}

// A client that never reads costs the gateway at most its high-water mark
// (plus the kernel's socket buffers): the rest is dropped for it, and the
// gateway goes on forwarding to everyone else.
func TestGatewaySlowClientBounded(t *testing.T) {
	testenv.CheckLeaks(t)
	const hwm, n = 10, 600
	rig := newGatewayRig(t, hwm)
	// Reached by the probes, then never read; its own small queue makes
	// its library stop reading the connection, as a slow machine would.
	slow := rig.client(t, newZCtx(t), hwm)
	before := int64(rig.g.Stats().Forwarded)
	body := bytes.Repeat([]byte("y"), 64<<10)
	for i := range n {
		if _, err := rig.pub.SendMessage(fmt.Sprintf("org.example.dev.test.%d", i), body); err != nil {
			t.Fatal(err)
		}
		// The publisher's own queue to the gateway is bounded too: pace
		// the sender on what the gateway has taken.
		for int64(rig.g.Stats().Forwarded) < before+int64(i+1)-hwm {
			time.Sleep(time.Millisecond)
		}
	}
	testenv.WaitFor(t, "the gateway to forward everything", func() bool { return int64(rig.g.Stats().Forwarded) >= before+n })
	got := 0
	slow.SetRcvtimeo(200 * time.Millisecond)
	for {
		msg, err := slow.RecvMessageBytes(0)
		if err != nil {
			break
		}
		if string(msg[0]) != "probe" {
			got++
		}
	}
	// What the kernel buffers on loopback (a few MB) comes on top of the
	// two high-water marks; half the messages is far beyond either.
	if got >= n/2 {
		t.Fatalf("the slow client got %d of %d messages: nothing bounded its queue", got, n)
	}
	t.Logf("slow client kept %d of %d messages (hwm %d)", got, n, hwm)
}

// TestGatewayRefusesOversizedMessages: the gateway's SUB drops a source
// that sends more than max_message_size, and connects to it again, which
// libzmq does not do by itself for a connecting socket.
func TestGatewayRefusesOversizedMessages(t *testing.T) {
	testenv.CheckLeaks(t)
	rig := newGatewayRig(t, 0)
	if _, err := rig.pub.SendMessage("big", bytes.Repeat([]byte("x"), gilmsg.DefaultMaxMessageSize+1)); err != nil {
		t.Fatal(err)
	}
	rig.sub.SetRcvtimeo(20 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := rig.pub.SendMessage("after", "{}"); err != nil {
			t.Fatal(err)
		}
		msg, err := rig.sub.RecvMessageBytes(0)
		if err == nil && string(msg[0]) != "probe" {
			if string(msg[0]) != "after" {
				t.Fatalf("the gateway forwarded %q (%d bytes)", msg[0], len(msg[len(msg)-1]))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway never reconnected to the source that sent an oversized message")
		}
	}
}

func TestNewGatewayErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		key   string
	}{
		{"port not a number", map[string]any{gateway.PortKey: "nine"}, gateway.PortKey},
		{"port out of range", map[string]any{gateway.PortKey: float64(70000)}, gateway.PortKey},
		{"hwm not an integer", map[string]any{gateway.HWMKey: 1.5}, gateway.HWMKey},
		// 2^32 would reach libzmq's int as 0: no bound at all.
		{"hwm past a C int", map[string]any{gateway.HWMKey: float64(1 << 32)}, gateway.HWMKey},
		{"endpoint not an address", map[string]any{}, "endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Extra = tc.extra
			var opts []gateway.Option
			if tc.key == "endpoints" {
				cfg.Endpoints = map[string][]string{"web01": {"nonsense"}}
				opts = append(opts, gateway.WithBind("tcp://127.0.0.1:*"))
			}
			_, err := gateway.New(cfg, opts...)
			var ce *gilmsg.ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("gateway.New = %v, want a ConfigError on %s", err, tc.key)
			}
		})
	}
}

func BenchmarkGateway(b *testing.B) {
	pub, sub := benchSockets(b)
	ep := bind(b, pub)
	cfg := testConfig()
	cfg.Endpoints = map[string][]string{"publisher": {ep}}
	// Every message must reach the one client: no drops in a burst.
	cfg.Extra = map[string]any{gateway.HWMKey: 1 << 30}
	g, err := gateway.New(cfg, gateway.WithBind("tcp://127.0.0.1:*"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	zbench.RunUntilEnd(b, g.Run)
	sub.Connect(g.Endpoint())
	benchPubSub(b, pub, sub)
}

// A high_water_mark of 0, fedmsg's "no limit", is logged once the gateway
// is up, with what it got instead; a gateway that fails to start says
// only why.
func TestGatewayWarnsOfUnboundedHWM(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endpoints map[string][]string
		warns     bool
	}{
		{"starts", map[string][]string{}, true},
		{"fails", map[string][]string{"web01": {"nonsense"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Endpoints = tc.endpoints
			cfg.Extra = map[string]any{gateway.HWMKey: float64(0)}
			var buf bytes.Buffer
			g, err := gateway.New(cfg, gateway.WithBind("tcp://127.0.0.1:*"), gateway.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			if err == nil {
				g.Close()
			}
			if (err == nil) != tc.warns {
				t.Fatalf("New = %v", err)
			}
			warned := strings.Contains(buf.String(), "high_water_mark must bound") && strings.Contains(buf.String(), "value=0")
			if warned != tc.warns {
				t.Errorf("warned %v, want %v; log: %s", warned, tc.warns, buf.String())
			}
		})
	}
}

// TestGatewayWaitsForSlowClient: with its queue per client left to the
// default (128 messages of max_message_size 8 MiB), the gateway waits for
// a client that is full rather than drop a burst to one that reads, only
// more slowly than the burst comes: the slow client gets all of it, in
// order. (The default dropped past 128, as an operator's
// high_water_mark still does: TestGatewaySlowClientBounded.)
func TestGatewayWaitsForSlowClient(t *testing.T) {
	testenv.CheckLeaks(t)
	const n = 3000
	rig := newGatewayRig(t, 0)
	// rig.sub reads at once, and is its goroutine's until it is done.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		rig.sub.SetRcvtimeo(200 * time.Millisecond)
		for {
			if _, err := rig.sub.RecvMessageBytes(0); err != nil {
				return
			}
		}
	}()
	defer func() { <-drained }()
	slow := rig.client(t, newZCtx(t), 10)
	body := bytes.Repeat([]byte("y"), 4<<10)
	for i := range n {
		if _, err := rig.pub.SendMessage("burst", strconv.Itoa(i), body); err != nil {
			t.Fatal(err)
		}
	}
	slow.SetRcvtimeo(10 * time.Second)
	for i := 0; i < n; {
		msg, err := slow.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("the slow client got %d of %d: %v", i, n, err)
		}
		if string(msg[0]) != "burst" {
			continue // a probe
		}
		if string(msg[1]) != strconv.Itoa(i) {
			t.Fatalf("the slow client got message %s, want %d: the gateway dropped the ones between", msg[1], i)
		}
		if i++; i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
