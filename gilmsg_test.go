package gilmsg

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	zmq "github.com/pebbe/zmq4"
)

// The end-to-end acceptance test of the design card's shape (WIRE.md §6):
// Publish listens for ACKs before it sends, waits for a signed ACK from
// every declared recipient and from nobody else, and Tail ACKs each gilmsg
// message it yields and nothing else. The recipients that must be watched
// closely are bare ZeroMQ sockets, so that what they see is what was sent.

// rawRecipient is a recipient made of bare sockets: a SUB connected to the
// publisher, and an XPUB, listed under the recipient's name in the
// publisher's endpoints, where the publisher's ACK listener subscribes and
// from which ACKs are sent. Its methods belong to the test's goroutine.
type rawRecipient struct {
	t        *testing.T
	zctx     *zmq.Context
	sub      *zmq.Socket
	xpub     *zmq.Socket
	endpoint string
	signer   *Signer
	subs     []string // prefixes subscribed at the XPUB, in order
	i        int
}

// newRawRecipient binds the XPUB and records it under name in n, so start
// every bus after it; name must be a certname of n's PKI.
func newRawRecipient(t *testing.T, n *testNet, name string) *rawRecipient {
	t.Helper()
	cfg := n.config(name)
	signer, err := LoadSigner(cfg.SSLDir, cfg.Certnames[name])
	if err != nil {
		t.Fatal(err)
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	r := &rawRecipient{t: t, zctx: zctx, signer: signer}
	t.Cleanup(func() { closeAll(zctx, r.sub, r.xpub) })
	if r.sub, err = zctx.NewSocket(zmq.SUB); err != nil {
		t.Fatal(err)
	}
	if r.xpub, err = zctx.NewSocket(zmq.XPUB); err != nil {
		t.Fatal(err)
	}
	r.sub.SetLinger(0)
	r.xpub.SetLinger(minSendLingerMS * time.Millisecond)
	r.xpub.SetXpubVerboser(1)
	if err := r.xpub.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	r.endpoint, _ = r.xpub.GetLastEndpoint()
	n.endpoints[name] = []string{r.endpoint}
	return r
}

// listen subscribes the SUB to everything at addr.
func (r *rawRecipient) listen(addr string) {
	r.t.Helper()
	if err := r.sub.SetSubscribe(""); err != nil {
		r.t.Fatal(err)
	}
	if err := r.sub.Connect(addr); err != nil {
		r.t.Fatal(err)
	}
}

// drain reads the subscriptions that have reached the XPUB.
func (r *rawRecipient) drain() {
	for {
		frames, err := r.xpub.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
		if len(frames) == 1 && len(frames[0]) > 0 && frames[0][0] == 1 {
			r.subs = append(r.subs, string(frames[0][1:]))
		}
	}
}

// subscribed reports whether a subscription matching topic had reached the
// XPUB when the last message arrived.
func (r *rawRecipient) subscribed(topic string) bool {
	return slices.ContainsFunc(r.subs, func(p string) bool { return strings.HasPrefix(topic, p) })
}

// next returns the next message the SUB receives, failing after a generous
// bound.
func (r *rawRecipient) next() *Envelope {
	r.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(r.sub, zmq.POLLIN)
	poller.Add(r.xpub, zmq.POLLIN) // to see subscriptions as they come
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		polled, err := poller.Poll(10 * time.Millisecond)
		if err != nil {
			r.t.Fatal(err)
		}
		if !slices.ContainsFunc(polled, func(p zmq.Polled) bool { return p.Socket == r.sub }) {
			r.drain()
			continue
		}
		// What had subscribed when the message arrived, give or take the
		// few microseconds since the poll returned.
		r.drain()
		frames, err := r.sub.RecvMessageBytes(0)
		if err != nil {
			r.t.Fatal(err)
		}
		env, err := ParseEnvelope(frames[len(frames)-1])
		if err != nil {
			r.t.Fatal(err)
		}
		return env
	}
	r.t.Fatal("the raw recipient got nothing within 10s")
	return nil
}

// send publishes an ACK-shaped message naming ackMsgID from the XPUB;
// signer nil leaves it unsigned, tamper changes it after signing.
func (r *rawRecipient) send(topic, ackMsgID string, signer *Signer, tamper bool) {
	r.t.Helper()
	r.i++
	fields := map[string]any{
		fieldTopic:     topic,
		fieldMsg:       map[string]any{"ack_msg_id": ackMsgID},
		fieldTimestamp: json.Number(strconv.FormatInt(time.Now().Unix(), 10)),
		fieldMsgID:     strconv.Itoa(time.Now().Year()) + "-" + uuid.NewString(),
		fieldI:         json.Number(strconv.Itoa(r.i)),
		fieldUsername:  "raw",
	}
	if signer != nil {
		if err := signer.Sign(fields); err != nil {
			r.t.Fatal(err)
		}
	}
	if tamper {
		fields[fieldUsername] = "someone else"
	}
	body, err := MarshalCanonical(fields)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.xpub.SendMessage(topic, body); err != nil {
		r.t.Fatal(err)
	}
}

type publishResult struct {
	r   *Receipt
	err error
}

func publishInBackground(t *testing.T, pub *Bus, opts ...PublishOption) <-chan publishResult {
	res := make(chan publishResult, 1)
	go func() {
		r, err := pub.Publish(ctxT(t), "job", map[string]any{"card": true}, opts...)
		res <- publishResult{r, err}
	}()
	return res
}

// The ACK listener is subscribed at the recipient before the message is
// sent: a recipient that ACKs the first copy at once, and once only, to a
// publisher that never resends, is heard.
func TestCardListensBeforeSend(t *testing.T) {
	n := newTestNet(t)
	r := newRawRecipient(t, n, c1)
	pub := n.start(pubCN, WithoutResend())
	r.listen(pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	res := publishInBackground(t, pub, WithRecipients(c1), WithAckTimeout(20*time.Second))
	env := r.next()
	if !r.subscribed(pub.ackTopic) {
		t.Fatalf("the message arrived before the publisher's ACK subscription (subscriptions %q)", r.subs)
	}
	if !env.IsGilmsg() {
		t.Fatal("a reliable message without gilmsg_version")
	}
	r.send(pub.ackTopic, env.MsgID, r.signer, false)
	got := <-res
	if got.err != nil {
		t.Fatalf("one immediate ACK was not heard: %v", got.err)
	}
	if !slices.Equal(hostsOf(got.r.Acks), []string{c1}) || got.r.MsgID != env.MsgID {
		t.Fatalf("receipt %+v for %s", got.r, env.MsgID)
	}
	if s := pub.Stats(); s.Resends != 0 {
		t.Fatalf("%d resends with resending off", s.Resends)
	}
}

// Publish returns only once every declared recipient has ACKed with its own
// signature: ACKs that are unsigned, tampered with, or signed by someone
// else leave it waiting.
func TestCardWaitsForEverySignedAck(t *testing.T) {
	const relayCN = "relay01.example.org" // certified, but not a recipient
	n := newTestNet(t)
	r := newRawRecipient(t, n, c3)
	pub := n.start(pubCN)
	cs, _ := n.consumers(t, c1, c2)
	r.listen(pub.Endpoint())
	if err := pub.WaitSubscribers(ctxT(t), "job", 3); err != nil {
		t.Fatal(err)
	}
	res := publishInBackground(t, pub, WithRecipients(c1, c2, c3), WithAckTimeout(30*time.Second))
	env := r.next()
	waitFor(t, "the two bus recipients' ACKs", func() bool { return pub.Stats().AcksMatched == 2 })
	for _, name := range []string{c1, c2} {
		// Its application records the message a moment after the ACK.
		waitFor(t, name+"'s application to have it", func() bool { return cs.count(name, env.MsgID) == 1 })
	}

	other, err := LoadSigner(n.pki.Config().SSLDir, relayCN)
	if err != nil {
		t.Fatal(err)
	}
	received := pub.Stats().AcksReceived
	r.send(pub.ackTopic, env.MsgID, nil, false)                     // unsigned
	r.send(pub.ackTopic, env.MsgID, r.signer, true)                 // c3's, altered after signing
	r.send(pub.ackTopic, env.MsgID, other, false)                   // signed, by a non-recipient
	r.send(pub.ackTopic, "2026-"+uuid.NewString(), r.signer, false) // another message's
	waitFor(t, "the bad ACKs to be judged", func() bool { return pub.Stats().AcksReceived >= received+4 })
	select {
	case got := <-res:
		t.Fatalf("returned before %s ACKed: %+v %v", c3, got.r, got.err)
	default:
	}
	rejected := pub.Stats().AcksRejected
	for _, reason := range []string{"invalid: " + string(ReasonUnsigned), "invalid: " + string(ReasonSignature), ackRejectNotRecipient, ackRejectUnknownID} {
		if rejected[reason] == 0 {
			t.Errorf("no ACK rejected as %q: %v", reason, rejected)
		}
	}

	r.send(pub.ackTopic, env.MsgID, r.signer, false)
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	if !slices.Equal(hostsOf(got.r.Acks), []string{c1, c2, c3}) {
		t.Fatalf("acks %v, want all three in order", got.r.Acks)
	}
	if m := pub.Stats().AcksMatched; m != 3 {
		t.Fatalf("%d ACKs counted, want 3", m)
	}
}

// Tail ACKs each gilmsg message it yields, signed by the consumer, from
// its own endpoint; plain messages are yielded and never ACKed.
func TestCardTailAcksWhatItYields(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	cons := n.start(c1)

	// A bare SUB on the consumer's endpoint sees every ACK it sends.
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	acks, err := zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(zctx, acks) })
	acks.SetLinger(0)
	acks.SetSubscribe(cons.ackTopic)
	acks.Connect(cons.Endpoint())
	if err := cons.WaitSubscribers(ctxT(t), cons.ackTopic, 1); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	yielded := map[string]bool{} // msg_id → carried gilmsg_version
	ctx := ctxT(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range cons.Tail(ctx, pub.fullTopic("job", "")) {
			if err != nil {
				return
			}
			mu.Lock()
			yielded[strings.Clone(m.MsgID)] = m.IsGilmsg()
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cons.Close(); <-done })
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}

	var reliable, plain []string
	for i := range 3 {
		p, err := pub.Publish(ctxT(t), "job", map[string]any{"plain": i})
		if err != nil {
			t.Fatal(err)
		}
		plain = append(plain, p.MsgID)
		r, err := pub.Publish(ctxT(t), "job", map[string]any{"reliable": i}, WithRecipients(c1), WithAckTimeout(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		reliable = append(reliable, r.MsgID)
	}
	// One connection delivers the consumer's ACKs in the order it sent
	// them: once the last reliable message's has arrived, any ACK of a
	// plain one published before it has too.
	ackedBy := map[string][]string{}
	last := reliable[len(reliable)-1]
	deadline := time.Now().Add(10 * time.Second)
	for len(ackedBy[last]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the raw SUB saw no ACK of %s (ACKs: %v)", last, ackedBy)
		}
		frames, err := acks.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		env, err := ParseEnvelope(frames[len(frames)-1])
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Validator().ValidateSignedBy(env, c1); err != nil {
			t.Fatalf("an ACK not signed by %s: %v", c1, err)
		}
		id, _ := env.Msg().(map[string]any)["ack_msg_id"].(string)
		ackedBy[id] = append(ackedBy[id], env.MsgID)
	}
	// The loop body records a message a moment after its ACK may leave.
	waitFor(t, "every message to be yielded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(yielded) >= len(reliable)+len(plain)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range reliable {
		if gilmsg, ok := yielded[id]; !ok || !gilmsg {
			t.Errorf("reliable %s: yielded %v, gilmsg %v", id, ok, gilmsg)
		}
		if len(ackedBy[id]) == 0 {
			t.Errorf("reliable %s was yielded but not ACKed", id)
		}
	}
	for _, id := range plain {
		if _, ok := yielded[id]; !ok {
			t.Errorf("plain %s was not yielded", id)
		}
		if len(ackedBy[id]) != 0 {
			t.Errorf("plain %s was ACKed", id)
		}
	}
	if extra := slices.DeleteFunc(slices.Collect(maps.Keys(ackedBy)), func(id string) bool { return slices.Contains(reliable, id) }); len(extra) > 0 {
		t.Errorf("ACKs of messages never published reliably: %v", extra)
	}
}
