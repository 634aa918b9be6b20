package gilmsg

import (
	"context"
	"errors"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStuckSubscriberSparesSlowOnes: once a wait for a stuck subscriber
// ran out, the publisher sent past every full subscriber for 5 ×
// zmq_send_wait, so that a slow but live one, full then, lost the burst
// it would otherwise have been waited for (a Python subscriber reading
// 500 a second lost 3,648 of 8,000 lines to one stopped process). The
// one send past the full ones takes the stuck one out of libzmq's count
// until it has read half its queue: the sends after it must wait for the
// slow one again.
func TestStuckSubscriberSparesSlowOnes(t *testing.T) {
	const burst, size = 600, 64 << 10
	tn := newTestNet(t)
	tn.mutate = func(c *Config) {
		c.SignMessages, c.ValidateSignatures = false, false
		c.HighWaterMark, c.ZMQSendWait = 0, 1000
	}
	pub := tn.start("publisher01.example.org")
	zctx := testZCtx(t)
	stuckSub(t, zctx, pub.Endpoint())
	slow := stuckSub(t, zctx, pub.Endpoint()) // small buffers: full soon
	slow.SetRcvtimeo(20 * time.Second)
	if err := pub.WaitSubscribers(ctxT(t), "", 2); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", size)

	// The slow one reads each message before the next is published, so
	// it is never full when the wait for the stuck one runs out.
	for i := 0; pub.Stats().SendWaitsRanOut == 0; i++ {
		if _, err := pub.Publish(ctxT(t), "fill", map[string]any{"pad": pad}); err != nil {
			t.Fatal(err)
		}
		if _, err := slow.RecvMessageBytes(0); err != nil {
			t.Fatalf("fill message %d: %v", i, err)
		}
	}

	// A burst larger than what the slow one's queues hold: it reads only
	// once the publisher waits for it (or has sent everything).
	waitsBefore := pub.Stats().SendWaits
	sent := make(chan error, 1)
	go func() {
		for i := range burst {
			if _, err := pub.Publish(context.Background(), "burst."+strconv.Itoa(i), map[string]any{"pad": pad}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	waitFor(t, "the publisher to wait for the slow subscriber or to finish the burst", func() bool {
		return pub.Stats().SendWaits > waitsBefore || len(sent) > 0
	})
	for i := 0; i < burst; {
		frames, err := slow.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("the slow subscriber got %d of %d: %v", i, burst, err)
		}
		_, n, ok := strings.Cut(string(frames[0]), ".burst.")
		if !ok {
			continue // the fill's last
		}
		if n != strconv.Itoa(i) {
			t.Fatalf("the slow subscriber got burst message %s, want %d: the publisher sent past it", n, i)
		}
		i++
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if st := pub.Stats(); st.SendWaitsRanOut != 1 {
		t.Errorf("%d waits ran out, want 1 (the stuck subscriber's)", st.SendWaitsRanOut)
	}
}

// TestReliablePublishPastStuckSubscriber: the ACK clock of a reliable
// publish started before its message had left the socket, so that the
// one publish whose send waited zmq_send_wait for a stuck subscriber
// (nothing to do with its recipient) timed out while its ACK was on its
// way (a logger with the defaults, 2 s each, exited 3 at line 2433 of
// 6000 that its recipient had all printed).
func TestReliablePublishPastStuckSubscriber(t *testing.T) {
	const size = 64 << 10
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.HighWaterMark, c.ZMQSendWait = 0, 1500 }
	pub := n.start(pubCN)
	n.consumers(t, c1)
	stuckSub(t, testZCtx(t), pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "", 2); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", size)
	for i := 0; pub.Stats().SendWaitsRanOut == 0; i++ {
		if i == 2000 {
			t.Fatal("the stuck subscriber never filled up")
		}
		if _, err := pub.Publish(ctxT(t), "job", map[string]any{"pad": pad}, WithRecipients(c1), WithAckTimeout(time.Second)); err != nil {
			t.Fatalf("reliable publish %d: %v", i, err)
		}
	}
}

// TestAckPastStuckSubscriber: a subscriber that stopped reading on a
// recipient's own endpoint made that recipient's ACK wait zmq_send_wait
// in its socket, and its publisher timed out although the message had
// been received (gilmsg logger exited 3 at line 3009 of 6000, found by
// attacking). An ACK now goes past full subscribers at once.
func TestAckPastStuckSubscriber(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.HighWaterMark, c.ZMQSendWait = 0, 3000 }
	pub := n.start(pubCN)
	_, buses := n.consumers(t, c1)
	stuckSub(t, testZCtx(t), buses[0].Endpoint())
	if err := buses[0].WaitSubscribers(ctxT(t), "", 2); err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		if _, err := pub.Publish(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1), WithAckTimeout(2*time.Second)); err != nil {
			t.Fatalf("reliable publish %d: %v (the recipient's stats: %+v)", i, err, buses[0].Stats())
		}
	}
	i := 0
	for ; buses[0].Stats().AcksSentPastFull == 0; i++ {
		if i == 5000 {
			t.Fatal("the stuck subscriber never filled up")
		}
		publish(i)
	}
	for end := i + 20; i < end; i++ {
		publish(i)
	}
	if st := buses[0].Stats(); st.SendWaits != 0 {
		t.Errorf("the recipient waited %d times for a full subscriber to send ACKs", st.SendWaits)
	}
}

// publishingIntoStuck starts a publisher with a zmq_send_wait of a minute
// and a subscriber that never reads, and publishes 512 kB messages from a
// goroutine until one waits for that subscriber. published gets the error
// that ends the publishing.
func publishingIntoStuck(t *testing.T) (pub *Bus, published <-chan error) {
	t.Helper()
	tn := newTestNet(t)
	tn.mutate = func(c *Config) {
		c.SignMessages, c.ValidateSignatures = false, false
		c.HighWaterMark, c.ZMQSendWait = 0, 60000
	}
	pub = tn.start("publisher01.example.org")
	stuckSub(t, testZCtx(t), pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "big", 1); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 512<<10)
	errs := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if _, err := pub.Publish(context.Background(), "big", map[string]any{"i": i, "pad": pad}); err != nil {
				errs <- err
				return
			}
		}
	}()
	waitFor(t, "a publish to wait for the stuck subscriber", func() bool { return pub.Stats().SendWaits > 0 })
	return pub, errs
}

// TestCloseCutsSendWait: Close of a bus whose publish waits for a
// subscriber that stopped reading ends that wait (zsock.Fanout.Stop):
// it waited all of zmq_send_wait, up to a minute, before.
func TestCloseCutsSendWait(t *testing.T) {
	pub, published := publishingIntoStuck(t)
	closed := make(chan error, 1)
	go func() { closed <- pub.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waiting for the stuck subscriber after 30 s of a 60 s zmq_send_wait")
	}
	if err := <-published; !errors.Is(err, ErrClosed) {
		t.Errorf("the publish after Close: %v, want ErrClosed", err)
	}
}

// TestSendWaitHoldsNoThread: a publish waiting for a stuck subscriber
// waited in blocking cgo sends, each holding an OS thread asleep in the
// kernel (its goroutine "in syscall"), which the runtime had to replace
// and the woken thread had to get a P back from. It waits in Go's
// netpoller ("IO wait") on the socket's ZMQ_FD instead.
func TestSendWaitHoldsNoThread(t *testing.T) {
	if !parksInNetpoller {
		t.Skip("waits for room in blocking sends on this OS")
	}
	pub, published := publishingIntoStuck(t)
	// The waiting goroutine, once seen not running: its state.
	header := regexp.MustCompile(`^goroutine \d+ \[([^\]]*)\]:`)
	var state string
	waitFor(t, "the waiting goroutine to block", func() bool {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if m := header.FindStringSubmatch(g); m != nil && strings.Contains(g, "zsock.(*Fanout).Send") &&
				m[1] != "running" && m[1] != "runnable" {
				state = m[1]
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(state, "IO wait") {
		t.Errorf("the publish waiting for room is %q, want %q: it holds an OS thread", state, "IO wait")
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-published; !errors.Is(err, ErrClosed) {
		t.Errorf("the publish after Close: %v, want ErrClosed", err)
	}
}
