package gilmsg

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	zmq "github.com/pebbe/zmq4"
)

// pyTail is a recipient that behaves as a Python gilmsg tail: it processes
// and ACKs every copy of a gilmsg message it gets, with no de-duplication,
// and counts the copies. Its sockets belong to its goroutine.
type pyTail struct {
	r      *rawRecipient
	ackTop string

	mu     sync.Mutex
	copies map[string]int
	acks   int // ACKs sent
	hold   bool
	held   []string // msg_ids received while hold was set, not ACKed yet
}

// newPyTail binds the tail's endpoint under name (a certname of n's PKI)
// in n: start every bus after it.
func newPyTail(t *testing.T, n *testNet, name string) *pyTail {
	t.Helper()
	return &pyTail{r: newRawRecipient(t, n, name), copies: map[string]int{}}
}

// run subscribes to everything at addr and processes what arrives until
// the test ends. beforeAck, if set, runs on the tail's goroutine between
// processing a copy and ACKing it: the time a Python tail takes.
func (p *pyTail) run(t *testing.T, addr, ackTopic string, beforeAck func()) {
	t.Helper()
	p.ackTop = ackTopic
	p.r.listen(addr)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		poller := zmq.NewPoller()
		poller.Add(p.r.sub, zmq.POLLIN)
		poller.Add(p.r.xpub, zmq.POLLIN)
		for {
			select {
			case <-quit:
				return
			default:
			}
			p.r.drain() // the XPUB's subscriptions, which nothing else reads
			p.mu.Lock()
			var release []string
			if !p.hold {
				release, p.held = p.held, nil
			}
			p.mu.Unlock()
			for _, id := range release {
				p.ack(t, id)
			}
			polled, err := poller.Poll(5 * time.Millisecond)
			if err != nil || !slices.ContainsFunc(polled, func(x zmq.Polled) bool { return x.Socket == p.r.sub }) {
				continue
			}
			frames, err := p.r.sub.RecvMessageBytes(0)
			if err != nil {
				continue
			}
			env, err := ParseEnvelope(frames[len(frames)-1])
			if err != nil || !env.IsGilmsg() || isAckTopic(env.Topic) {
				continue
			}
			id := strings.Clone(env.MsgID)
			p.mu.Lock()
			p.copies[id]++
			hold := p.hold
			if hold {
				p.held = append(p.held, id)
			}
			p.mu.Unlock()
			if beforeAck != nil {
				beforeAck()
			}
			if !hold {
				p.ack(t, id)
			}
		}
	}()
	t.Cleanup(func() { close(quit); <-done })
}

// ack publishes the signed ACK of msgID, as gilmsg's _acknowledge does.
func (p *pyTail) ack(t *testing.T, msgID string) {
	r := p.r
	r.i++
	fields := map[string]any{
		fieldTopic:     p.ackTop,
		fieldMsg:       map[string]any{"ack_msg_id": msgID},
		fieldTimestamp: json.Number(strconv.FormatInt(time.Now().Unix(), 10)),
		fieldMsgID:     strconv.Itoa(time.Now().Year()) + "-" + uuid.NewString(),
		fieldI:         json.Number(strconv.Itoa(r.i)),
		fieldUsername:  "pytail",
	}
	err := r.signer.Sign(fields)
	var body []byte
	if err == nil {
		body, err = MarshalCanonical(fields)
	}
	if err == nil {
		_, err = r.xpub.SendMessage(p.ackTop, body)
	}
	if err != nil {
		t.Errorf("the tail's ACK of %s: %v", msgID, err)
		return
	}
	p.mu.Lock()
	p.acks++
	p.mu.Unlock()
}

func (p *pyTail) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.copies[id]
}

// setHold makes the tail keep its ACKs (true) or send those it kept and
// ACK at once again (false).
func (p *pyTail) setHold(on bool) {
	p.mu.Lock()
	p.hold = on
	p.mu.Unlock()
}

// joiner opens, each time it is called, new SUB sockets at a publisher
// as a Python gilmsg publish does for its ACK listener (one subscribed to
// everything, one to the ACK topic), closes the previous ones (that
// listener is done), and waits until the publisher has seen the new
// subscriptions. Its sockets belong to the caller's goroutine.
type joiner struct {
	t        *testing.T
	pub      *Bus
	prefixes []string
	zctx     *zmq.Context
	socks    []*zmq.Socket
	joined   int // rounds the publisher saw
}

func newJoiner(t *testing.T, pub *Bus, prefixes ...string) *joiner {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	j := &joiner{t: t, pub: pub, prefixes: prefixes, zctx: zctx}
	t.Cleanup(func() { closeAll(zctx, j.socks...) })
	return j
}

// join makes one round; it reports false if the publisher did not see it
// within a generous bound. Safe from any one goroutine at a time.
func (j *joiner) join() bool {
	for _, s := range j.socks {
		s.Close()
	}
	j.socks = j.socks[:0]
	subs := j.pub.pub.subs
	before := subs.Joins()
	for _, prefix := range j.prefixes {
		s, err := j.zctx.NewSocket(zmq.SUB)
		if err != nil {
			j.t.Errorf("joiner: %v", err)
			return false
		}
		j.socks = append(j.socks, s)
		s.SetLinger(0)
		s.SetSubscribe(prefix)
		if err := s.Connect(j.pub.Endpoint()); err != nil {
			j.t.Errorf("joiner: %v", err)
			return false
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for subs.Joins() < before+uint64(len(j.prefixes)) {
		if time.Now().After(deadline) {
			j.t.Errorf("the publisher did not see %d new subscriptions within 10s", len(j.prefixes))
			return false
		}
		j.pub.pub.wake() // subscriptions are read when its goroutine wakes
		time.Sleep(time.Millisecond)
	}
	j.joined++
	return true
}

// Python gilmsg publishes on the same bus open new SUB sockets, subscribed
// to everything, all the time: none of that makes a Go reliable publisher
// send a copy to a healthy recipient that simply has not ACKed yet, which a
// Python tail would process twice (issue 28). Here a whole new "Python
// publish" joins while each message is being processed, before its ACK.
func TestNewSubscribersCauseNoCopyAtHealthyRecipient(t *testing.T) {
	const messages = 20
	n := newTestNet(t)
	py := newPyTail(t, n, c1)
	pub := n.start(pubCN)
	j := newJoiner(t, pub, "", pub.ackTopic)
	py.run(t, pub.Endpoint(), pub.ackTopic, func() { j.join() })
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	var ids []string
	slow := map[string]bool{}
	for i := range messages {
		r, err := pub.Publish(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(c1), WithAckTimeout(20*time.Second))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		ids = append(ids, r.MsgID)
		// A copy is allowed only once the recipient is late, at the floor
		// or later: an ACK that slow (a very loaded machine) may earn one.
		if r.Acks[0].Delay >= lateFloor {
			slow[r.MsgID] = true
		}
	}
	if j.joined < messages {
		t.Fatalf("the publisher saw only %d of %d rounds of new subscribers", j.joined, messages)
	}
	// Once a reliable marker is ACKed, the tail has processed every copy
	// sent before it (one stream, in order).
	if _, err := pub.Publish(ctxT(t), "marker", nil, WithRecipients(c1), WithAckTimeout(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if got := py.count(id); got != 1 && !(slow[id] && got == 2) {
			t.Errorf("message %d: a healthy tail without dedupe processed it %d times", i, got)
		}
	}
	if s := pub.Stats(); int(s.Resends) > len(slow) {
		t.Errorf("%d resends for %d slow ACKs", s.Resends, len(slow))
	}
}

// A resend answers a subscription that a message on the topic would
// match; any other (another topic, the ACK topic) says nothing about the
// recipients of this one.
func TestResendOnlyOnMatchingSubscription(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN, WithResendDelays(time.Minute, time.Minute)) // no fallback
	late := n.start(c1)
	raw := newRawSub(t, pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	res := publishInBackground(t, pub, WithRecipients(c1), WithAckTimeout(30*time.Second))
	waitFor(t, "the first send", func() bool { return pub.Stats().Published >= 1 })
	sent := time.Now()
	// Past the time a resend needs the recipient to be late, so that only
	// the kind of subscription decides.
	waitFor(t, c1+" to be late", func() bool { return time.Since(sent) > pub.lateAfter(c1)+50*time.Millisecond })
	other := newJoiner(t, pub, pub.fullTopic("other", ""), pub.ackTopic, "org.unrelated")
	for range 3 {
		if !other.join() {
			t.FailNow()
		}
	}
	if s := pub.Stats(); s.Resends != 0 {
		t.Fatalf("%d resends for subscriptions the message does not match", s.Resends)
	}
	// The recipient's own subscription does match: that is the one resend.
	var cs consumerSet
	cs.run(t, c1, late)
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	if s := pub.Stats(); s.Resends != 1 {
		t.Fatalf("%d resends, want 1 (for the recipient's subscription)", s.Resends)
	}
	marker, err := pub.Publish(ctxT(t), "marker", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker", func() bool { return raw.count(marker.MsgID) == 1 && cs.count(c1, marker.MsgID) == 1 })
	if c := raw.count(got.r.MsgID); c != 2 {
		t.Fatalf("the subscriber present from the start got %d copies, want 2", c)
	}
}

// A recipient that has ACKed is never the reason for a resend: with one
// recipient answered at once and another slow but known to be slow (its
// ACKs have taken long before), a new subscriber after the first one's
// lateness has passed sends nothing.
func TestAckedRecipientIsNoReasonToResend(t *testing.T) {
	n := newTestNet(t)
	fast, slow := newPyTail(t, n, c1), newPyTail(t, n, c2)
	pub := n.start(pubCN, WithResendDelays(time.Minute, time.Minute)) // no fallback
	fast.run(t, pub.Endpoint(), pub.ackTopic, nil)
	slow.run(t, pub.Endpoint(), pub.ackTopic, nil)
	if err := pub.WaitSubscribers(ctxT(t), "job", 2); err != nil {
		t.Fatal(err)
	}
	pub.ackDelays.observe(c2, time.Minute) // late only after minutes
	slow.setHold(true)
	res := publishInBackground(t, pub, WithRecipients(c1, c2), WithAckTimeout(30*time.Second))
	waitFor(t, "both to get it", func() bool { return pub.Stats().AcksMatched == 1 && len(slow.heldIDs()) == 1 })
	sent := time.Now()
	waitFor(t, c1+"'s lateness to pass", func() bool { return time.Since(sent) > pub.lateAfter(c1)+50*time.Millisecond })
	j := newJoiner(t, pub, "")
	for range 3 {
		if !j.join() {
			t.FailNow()
		}
	}
	slow.setHold(false)
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	if s := pub.Stats(); s.Resends != 0 {
		t.Fatalf("%d resends, though the only recipient missing was not late", s.Resends)
	}
	if c := slow.count(got.r.MsgID); c != 1 {
		t.Fatalf("the slow recipient got %d copies", c)
	}
}

// The slow fallback, too, sends nothing while no recipient is late: a
// recipient known to be slow is left to answer in its own time.
func TestFallbackWaitsUntilLate(t *testing.T) {
	n := newTestNet(t)
	slow := newPyTail(t, n, c1)
	pub := n.start(pubCN, WithResendDelays(20*time.Millisecond, 20*time.Millisecond))
	slow.run(t, pub.Endpoint(), pub.ackTopic, nil)
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	pub.ackDelays.observe(c1, time.Minute) // late only after minutes
	slow.setHold(true)
	res := publishInBackground(t, pub, WithRecipients(c1), WithAckTimeout(30*time.Second))
	waitFor(t, "the recipient to get it", func() bool { return len(slow.heldIDs()) == 1 })
	sent := time.Now()
	// Ten fallback periods.
	waitFor(t, "the fallback's time", func() bool { return time.Since(sent) > 200*time.Millisecond })
	slow.setHold(false)
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	if s := pub.Stats(); s.Resends != 0 {
		t.Fatalf("%d fallback resends to a recipient that was not late", s.Resends)
	}
	if c := slow.count(got.r.MsgID); c != 1 {
		t.Fatalf("the slow recipient got %d copies", c)
	}
}

func (p *pyTail) heldIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.held)
}

// A recipient that really joins late, while others keep joining, is still
// reached once it is late, and its lateness follows its own ACK delays.
func TestLateRecipientReachedAmongJoiners(t *testing.T) {
	n := newTestNet(t)
	py := newPyTail(t, n, c1)
	pub := n.start(pubCN, WithResendDelays(time.Minute, time.Minute)) // no fallback
	j := newJoiner(t, pub, "", pub.ackTopic)
	stop := make(chan struct{})
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !j.join() {
				return
			}
		}
	}()
	res := publishInBackground(t, pub, WithRecipients(c1), WithAckTimeout(30*time.Second))
	waitFor(t, "the first send", func() bool { return pub.Stats().Published >= 1 })
	py.run(t, pub.Endpoint(), pub.ackTopic, nil)
	got := <-res
	close(stop)
	<-joined
	if got.err != nil {
		t.Fatalf("a late recipient among joiners: %v", got.err)
	}
	if s := pub.Stats(); s.Resends == 0 {
		t.Fatalf("ACKed without a resend? %+v", s)
	}
	if d, ok := pub.ackDelays.recent(c1); !ok || d != got.r.Acks[0].Delay {
		t.Fatalf("the recipient's recent ACK delay is %v (known %v), want its first, %v", d, ok, got.r.Acks[0].Delay)
	}
}

// Lateness: the floor, or lateFactor recent delays of that recipient (of
// all recipients for one never heard from), whichever is longer; an
// explicit first resend lowers the floor.
func TestLateAfter(t *testing.T) {
	n := newTestNet(t)
	b := n.start(pubCN)
	if got := b.lateAfter(c1); got != lateFloor {
		t.Errorf("nothing known: late after %v, want the floor %v", got, lateFloor)
	}
	b.observeAcks([]Ack{{Recipient: c1, Delay: time.Second}})
	if got := b.lateAfter(c1); got != lateFactor*time.Second {
		t.Errorf("after one ACK in 1s: late after %v", got)
	}
	b.observeAcks([]Ack{{Recipient: c1, Delay: 0}})
	if got, want := b.lateAfter(c1), lateFactor*time.Second*7/8; got != want {
		t.Errorf("after an ACK in 0s: late after %v, want %v (1/8 per sample)", got, want)
	}
	if got, want := b.lateAfter(c2), max(lateFloor, lateFactor*time.Duration(b.ackRTT.Load())); got != want || want == lateFloor {
		t.Errorf("a recipient never heard from: late after %v, want all recipients' %v", got, want)
	}
	quick := n.start(c3, WithResendDelays(10*time.Millisecond, 0))
	if got := quick.lateAfter(c1); got != 10*time.Millisecond {
		t.Errorf("with the first resend at 10ms: late after %v", got)
	}
	var d ackDelays
	for i := range maxAckDelays + 1 {
		d.observe(strconv.Itoa(i), time.Second)
	}
	if len(d.avg) > maxAckDelays {
		t.Errorf("%d recipients kept, bound %d", len(d.avg), maxAckDelays)
	}
	// The tracker's own answer for JoinedSince, unit by unit.
	tr := newSubscriptionTracker()
	since := tr.Joins()
	tr.observe(append([]byte{1}, "org.other"...))
	if j, _ := tr.JoinedSince(since, "org.job.x"); j {
		t.Error("a subscription to another prefix counted as a join for this topic")
	}
	tr.observe(append([]byte{1}, "org.job"...))
	if j, _ := tr.JoinedSince(since, "org.job.x"); !j {
		t.Error("a matching subscription was not seen")
	}
}
