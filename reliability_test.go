package gilmsg

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// Faults around a reliable publish, on 127.0.0.1, that faults_test.go does
// not cover. The promise checked throughout: a publish that succeeds was
// seen by every recipient's application; one that fails names who did not
// ACK; nothing is seen twice.

// An ACK that cannot reach the publisher (the consumer ACKs from an
// endpoint the publisher does not know) makes the publish time out naming
// the consumer, which did get the message: a false negative, never a
// false positive.
func TestAckPathUnknownIsFalseNegative(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	consumer := n.start(c1)
	delete(pub.cfg.Endpoints, c1) // read by the ACK listener at the first reliable publish
	var cs consumerSet
	cs.run(t, c1, consumer)
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(500*time.Millisecond))
	var te *AckTimeoutError
	if !errors.As(err, &te) || !slices.Equal(te.Missing, []string{c1}) || len(te.Acked) != 0 {
		t.Fatalf("err = %v, want a timeout naming only %s", err, c1)
	}
	waitFor(t, "the consumer to have the message", func() bool { return cs.count(c1, te.MsgID) == 1 })
	if s := consumer.Stats(); s.AcksSent == 0 {
		t.Fatalf("the consumer sent no ACK: %+v", s)
	}
	if s := pub.Stats(); s.AcksMatched != 0 || s.Acked != 0 || s.TimedOut != 1 {
		t.Fatalf("publisher stats %+v", s)
	}
}

// A consumer closed while reliable publishes to it are in flight: each
// publish either succeeds, and then both recipients' applications saw the
// message exactly once, or times out naming whoever did not ACK; those
// started after it stopped all time out naming it.
func TestConsumerKilledMidStream(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithMaxInFlight(512))
	cs, buses := n.consumers(t, c1, c2)
	if err := pub.WaitSubscribers(ctxT(t), "job", 2); err != nil {
		t.Fatal(err)
	}
	before, after := scaled(400, 60), scaled(100, 20)
	launch := func(count int) []*PubFuture {
		var fs []*PubFuture
		for i := range count {
			f, err := pub.PublishAsync(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1, c2), WithAckTimeout(3*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, f)
		}
		return fs
	}
	first := launch(before)
	waitFor(t, "some publishes to complete", func() bool { return pub.Stats().Acked >= uint64(before/4) })
	buses[1].Close()
	second := launch(after)
	if err := pub.WaitAsync(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	succeeded, failed := 0, 0
	check := func(f *PubFuture, mustFail bool) {
		r, err := f.Result()
		var te *AckTimeoutError
		errors.As(err, &te)
		var id string
		var acked []Ack
		switch {
		case err == nil && !mustFail:
			succeeded++
			id, acked = r.MsgID, r.Acks
			if !sameSet(hostsOf(acked), []string{c1, c2}) {
				t.Errorf("success with ACKs from %v", hostsOf(acked))
			}
		case err == nil:
			t.Errorf("publish %s succeeded after %s stopped", r.MsgID, c2)
			return
		default:
			failed++
			if te == nil || len(te.Missing) == 0 {
				t.Errorf("err = %v, want a timeout naming who did not ACK", err)
				return
			}
			if mustFail && !slices.Equal(te.Missing, []string{c2}) {
				t.Errorf("after the stop: missing %v, want [%s]", te.Missing, c2)
			}
			id, acked = te.MsgID, te.Acked
		}
		// An ACK is sent only for a message the subscription yields.
		for _, a := range acked {
			waitFor(t, a.Recipient+" to count "+id, func() bool { return cs.count(a.Recipient, id) >= 1 })
			if c := cs.count(a.Recipient, id); c != 1 {
				t.Errorf("%s's application saw %s %d times", a.Recipient, id, c)
			}
		}
	}
	for _, f := range first {
		check(f, false)
	}
	for _, f := range second {
		check(f, true)
	}
	if s := pub.Stats(); s.Acked+s.TimedOut != uint64(before+after) || s.Acked != uint64(succeeded) {
		t.Errorf("stats %+v: want %d finished, %d ACKed", s, before+after, succeeded)
	}
	t.Logf("%d in flight when %s stopped or after: %d succeeded, %d timed out", before+after, c2, succeeded, failed)
}

// A consumer process killed outright (no Close, no linger: a crash) while
// reliable publishes are in flight, then started again on its endpoint:
// a publish succeeds only for what the process printed before ACKing,
// publishes fail naming it while it is down, and succeed again once it is
// back, with the same publisher.
func TestConsumerCrashRestart(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithMaxInFlight(256))
	ccfg := n.config(c1)
	proc := startConsumerProc(t, "", ccfg)
	pub.cfg.Endpoints[c1] = []string{proc.endpoint}
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var fs []*PubFuture
	for i := range scaled(200, 40) {
		f, err := pub.PublishAsync(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1), WithAckTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	waitFor(t, "some publishes to complete", func() bool { return pub.Stats().Acked >= 6 })
	proc.kill(t)
	down, err := pub.PublishAsync(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fs = append(fs, down)
	succeeded := 0
	for _, f := range fs {
		r, err := f.Result()
		if err == nil {
			succeeded++
			if f == down {
				t.Fatalf("publish %s succeeded with the consumer dead", r.MsgID)
			}
			if c := proc.count(r.MsgID); c != 1 {
				t.Errorf("ACKed %s, which the consumer printed %d times", r.MsgID, c)
			}
			continue
		}
		var te *AckTimeoutError
		if !errors.As(err, &te) || !slices.Equal(te.Missing, []string{c1}) {
			t.Errorf("err = %v, want a timeout naming %s", err, c1)
		}
	}
	t.Logf("%d in flight around the crash: %d succeeded", len(fs), succeeded)

	ccfg.Endpoints[c1] = []string{proc.endpoint} // the port it had
	again := startConsumerProc(t, "", ccfg)
	if again.endpoint != proc.endpoint {
		t.Fatalf("restarted on %s, not %s", again.endpoint, proc.endpoint)
	}
	var last *Receipt
	waitFor(t, "a reliable publish to the restarted consumer", func() bool {
		r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(300*time.Millisecond))
		if err != nil && !errors.Is(err, ErrAckTimeout) {
			t.Fatal(err)
		}
		last = r
		return err == nil
	})
	// The consumer prints before it ACKs, but its line reaches this test
	// through a pipe another goroutine reads: wait for the line, then
	// count it.
	waitFor(t, "the restarted consumer's line for the ACKed message", func() bool { return again.count(last.MsgID) > 0 })
	if c := again.count(last.MsgID); c != 1 {
		t.Fatalf("the restarted consumer printed the ACKed message %d times", c)
	}
}
