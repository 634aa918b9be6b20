package gilmsg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// oversized is one byte past the default max_message_size.
func oversized() []byte { return bytes.Repeat([]byte("x"), DefaultMaxMessageSize+1) }

// TestRelayRefusesOversizedMessages: the relay's inbound socket (and so
// the signing relay's, which opens it the same way) has max_message_size.
// One 40 MB message took a signing relay to 1.85 GB. The publisher that
// sent it is disconnected, reconnects, and what it sends next still goes
// through.
func TestRelayRefusesOversizedMessages(t *testing.T) {
	checkLeaks(t)
	r := testRelay(t, relayTestConfig())
	runRelay(t, r)
	c := newRelayClients(t, testZCtx(t), r)
	if _, err := c.pub.SendMessage("big", oversized()); err != nil {
		t.Fatal(err)
	}
	c.sub.SetRcvtimeo(20 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.pub.SendMessage("after", "{}"); err != nil {
			t.Fatal(err)
		}
		msg, err := c.sub.RecvMessageBytes(0)
		if err == nil && string(msg[0]) != "probe" {
			if string(msg[0]) != "after" {
				t.Fatalf("the relay forwarded %q (%d bytes)", msg[0], len(msg[len(msg)-1]))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing came through the relay after the oversized message")
		}
	}
}

// TestRelayStuckSubscriberBounded: with high_water_mark 0 (fedmsg's
// default), the relay queues at most DefaultFanoutBytes of
// max_message_size messages for a subscriber that does not read, not
// everything (500 of 4 MB took a relay to 1.97 GB).
func TestRelayStuckSubscriberBounded(t *testing.T) {
	checkLeaks(t)
	if got := fanoutHWM(sockOptsFromConfig(DefaultConfig())); got != DefaultFanoutBytes/DefaultMaxMessageSize {
		t.Fatalf("fanoutHWM = %d", got)
	}
	// max_message_size 1 MiB: a queue of 1,024 messages, of 4 kB here.
	cfg := relayTestConfig()
	cfg.MaxMessageSize = 1 << 20
	cfg.ZMQSendWait = 200 // the stuck subscriber costs one wait
	const n = 4000
	r := testRelay(t, cfg)
	runRelay(t, r)
	zctx := testZCtx(t)
	c := newRelayClients(t, zctx, r)
	o := testSockOpts()
	o.HWM = 10
	stuck := testSocket(t, zctx, zmq.SUB, o)
	stuck.SetRcvbuf(64 << 10)
	stuck.SetSubscribe("")
	if err := stuck.Connect(r.OutboundEndpoint()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stuck subscriber to get a probe", func() bool {
		c.pub.SendMessage("probe", "{}")
		_, err := stuck.RecvMessageBytes(zmq.DONTWAIT)
		return err == nil
	})
	body := bytes.Repeat([]byte("y"), 4<<10)
	before := r.Stats().Forwarded
	for i := range n {
		if _, err := c.pub.SendMessage("t", body); err != nil {
			t.Fatal(err)
		}
		for r.Stats().Forwarded+1000 < before+uint64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, "the relay to forward everything", func() bool { return r.Stats().Forwarded >= before+n })
	got := 0
	stuck.SetRcvtimeo(500 * time.Millisecond)
	for {
		if _, err := stuck.RecvMessageBytes(0); err != nil {
			break
		}
		got++
	}
	// The kernel's buffers (a few MB on loopback) come on top of 1,024.
	if got >= n-500 {
		t.Fatalf("the stuck subscriber got %d of %d messages: nothing bounded its queue", got, n)
	}
	t.Logf("stuck subscriber kept %d of %d (queue %d)", got, n, fanoutHWM(sockOptsFromConfig(cfg)))
}

// TestSlowSubscriberNotTakenForDead: a subscriber that reads, but more
// slowly than a burst arrives, gets all of it. The publisher's PINGs
// waited behind the burst, so a backlog longer than zmq_heartbeat_timeout
// looked like a dead peer: the connection was closed with everything
// queued for it (a 100,000-message burst to a Python tail lost 78%).
func TestSlowSubscriberNotTakenForDead(t *testing.T) {
	const n = 1500
	tn := newTestNet(t)
	tn.mutate = func(c *Config) {
		c.SignMessages, c.ValidateSignatures = false, false
		c.ZMQHeartbeatIvl, c.ZMQHeartbeatTimeout, c.ZMQHeartbeatTTL = 100, 300, 300
		// A publisher's queue of 16,384 messages: the whole burst, a
		// backlog of five heartbeat timeouts.
		c.MaxMessageSize = 64 << 10
	}
	pub := tn.start("publisher01.example.org")
	// A fedmsg tail as Python has it: no heartbeats of its own, libzmq's
	// default receive queue, and small kernel buffers.
	zctx := testZCtx(t)
	sub, err := zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetRcvhwm(100)
	sub.SetRcvbuf(16 << 10)
	sub.SetSubscribe("")
	if err := sub.Connect(pub.Endpoint()); err != nil {
		t.Fatal(err)
	}
	if err := pub.WaitSubscribers(ctxT(t), "slow", 1); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 4<<10)
	// Published as a burst while the subscriber reads: a subscriber that
	// reads nothing for zmq_send_wait is taken for stuck.
	published := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := pub.Publish(context.Background(), "slow", map[string]any{"i": i, "pad": pad}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	defer func() {
		if err := <-published; err != nil {
			t.Error(err)
		}
	}()
	// About 1.5 s of reading: five heartbeat timeouts.
	sub.SetRcvtimeo(5 * time.Second)
	for i := range n {
		frames, err := sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("message %d of %d: %v: the slow subscriber was dropped", i, n, err)
		}
		env, err := ParseEnvelope(frames[1])
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ I int }
		if err := env.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if v.I != i {
			t.Fatalf("got message %d, want %d: the ones between were dropped with the connection", v.I, i)
		}
		time.Sleep(time.Millisecond)
	}
}

// stuckSub connects a SUB to endpoint that never reads: a queue of one
// message and the kernel's smallest buffers, so that what is not taken
// waits in the publisher's queue for it, where it can be counted later.
func stuckSub(t *testing.T, zctx *zmq.Context, endpoint string) *zmq.Socket {
	t.Helper()
	s, err := zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetLinger(0)
	s.SetRcvhwm(1)
	s.SetRcvbuf(4 << 10)
	s.SetSubscribe("")
	if err := s.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	return s
}

// drain reads s until nothing comes for a while, and returns the count.
func drain(s *zmq.Socket) int {
	s.SetRcvtimeo(200 * time.Millisecond)
	got := 0
	for {
		if _, err := s.RecvMessageBytes(0); err != nil {
			return got
		}
		got++
	}
}

// TestBusStuckSubscriberCostsOneWait: with high_water_mark 0 (fedmsg's
// default) the bus's own publisher queued everything for a subscriber
// that does not read, without limit. Now its queue is capped (128
// messages of max_message_size 8 MiB), and the cap waits for a full
// subscriber rather than drop: the stuck one costs one wait of
// zmq_send_wait, after which the publisher sends past it, and a second
// subscriber that reads still gets every message, in order.
func TestBusStuckSubscriberCostsOneWait(t *testing.T) {
	const n, size = 300, 512 << 10
	tn := newTestNet(t)
	tn.mutate = func(c *Config) {
		c.SignMessages, c.ValidateSignatures = false, false
		c.HighWaterMark, c.ZMQSendWait = 0, 300
	}
	pub := tn.start("publisher01.example.org")
	stuck := stuckSub(t, testZCtx(t), pub.Endpoint())
	msgs := tail(t, tn.start(""), "")
	if err := pub.WaitSubscribers(ctxT(t), "big", 2); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", size)
	start := time.Now()
	got := make(chan error, 1)
	go func() {
		for i := range n {
			m := receive(t, msgs)
			var v struct{ I int }
			if err := m.Decode(&v); err != nil || v.I != i {
				got <- fmt.Errorf("message %d: i %d, %v", i, v.I, err)
				return
			}
		}
		got <- nil
	}()
	for i := range n {
		if _, err := pub.Publish(context.Background(), "big", map[string]any{"i": i, "pad": pad}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	if err := <-got; err != nil {
		t.Fatalf("the subscriber that reads: %v", err)
	}
	st := pub.Stats()
	kept := drain(stuck)
	t.Logf("%d × 512 kB published in %v; waits %d, of which ran out %d; the stuck subscriber had %d queued",
		n, took.Round(time.Millisecond), st.SendWaits, st.SendWaitsRanOut, kept)
	// 128 in the publisher's queue, a few more in the kernel's buffers.
	if kept > 200 {
		t.Errorf("the stuck subscriber had %d of %d messages of 512 kB queued: its queue is not bounded", kept, n)
	}
	if st.SendWaitsRanOut != 1 {
		t.Errorf("%d waits ran out, want 1: a stuck subscriber must cost one", st.SendWaitsRanOut)
	}
}

// TestRelayWaitsForSlowSubscriber: the relay's queue for each subscriber
// (128 messages at high_water_mark 0) dropped a burst to a subscriber that
// reads, only more slowly than the burst comes. Now a full subscriber
// makes the relay wait: a slow one gets all of it, in order.
func TestRelayWaitsForSlowSubscriber(t *testing.T) {
	checkLeaks(t)
	const n = 3000
	r := testRelay(t, relayTestConfig())
	runRelay(t, r)
	zctx := testZCtx(t)
	c := newRelayClients(t, zctx, r)
	// A fast one, which must not be what makes the relay wait; its
	// socket is its goroutine's until drain returns, before the cleanups.
	drained := make(chan int)
	go func() { drained <- drain(c.sub) }()
	defer func() { <-drained }()

	slow := stuckSub(t, zctx, r.OutboundEndpoint())
	waitFor(t, "the slow subscriber to get a probe", func() bool {
		c.pub.SendMessage("probe", "{}")
		_, err := slow.RecvMessageBytes(zmq.DONTWAIT)
		return err == nil
	})
	pad := bytes.Repeat([]byte("y"), 4<<10)
	for i := range n {
		if _, err := c.pub.SendMessage("burst", strconv.Itoa(i), pad); err != nil {
			t.Fatal(err)
		}
	}
	slow.SetRcvtimeo(10 * time.Second)
	for i := 0; i < n; {
		msg, err := slow.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("the slow subscriber got %d of %d: %v", i, n, err)
		}
		if string(msg[0]) != "burst" {
			continue // a probe
		}
		if string(msg[1]) != strconv.Itoa(i) {
			t.Fatalf("the slow subscriber got message %s, want %d: the relay dropped the ones between", msg[1], i)
		}
		if i++; i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestPublishRefusesOverMaxMessageSize: a msg larger than max_message_size
// is refused at Publish, naming the sizes: every Go subscriber would drop
// its connection rather than read it, and the publisher's queue for each
// subscriber is sized by that limit (a 40 MB message went out, and 128 of
// them would have been queued for a subscriber that does not read).
func TestPublishRefusesOverMaxMessageSize(t *testing.T) {
	tn := newTestNet(t)
	pub := tn.start("publisher01.example.org", WithMaxMessageSize(64<<10))
	msgs := tail(t, tn.start(""), "")
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}
	_, err := pub.Publish(ctxT(t), "x", map[string]any{"pad": strings.Repeat("p", 64<<10)})
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "65546 bytes") {
		t.Fatalf("publishing a msg of 64 KiB + 10 bytes: %v", err)
	}
	if _, err := pub.Publish(ctxT(t), "x", map[string]any{"pad": strings.Repeat("p", 60<<10)}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, msgs); len(m.Body) < 60<<10 {
		t.Fatalf("got %d bytes", len(m.Body))
	}
	if st := pub.Stats(); st.Published != 1 {
		t.Errorf("published %d, want 1", st.Published)
	}
}
