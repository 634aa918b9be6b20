package gilmsg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/devpki"
	zmq "github.com/pebbe/zmq4"
)

// forgedAck builds an ACK body for msgID signed by s (nil: unsigned),
// then lets tamper change the fields after signing.
func forgedAck(t *testing.T, topic, msgID string, s *Signer, tamper func(map[string]any)) []byte {
	t.Helper()
	fields := map[string]any{
		fieldTopic: topic, fieldMsg: map[string]any{"ack_msg_id": msgID},
		fieldTimestamp: json.Number("1764198000"), fieldMsgID: "2026-forged", fieldI: json.Number("1"), fieldUsername: "mallory",
	}
	if s != nil {
		if err := s.Sign(fields); err != nil {
			t.Fatal(err)
		}
	}
	if tamper != nil {
		tamper(fields)
	}
	body, err := MarshalCanonical(fields)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Forged ACKs of every kind, flooded while a reliable publish waits, never
// count: with the real recipient down the publish times out; with it up,
// the publish succeeds on its real ACK alone.
func TestForgedAcksNeverCount(t *testing.T) {
	// A PKI of this test's own: it revokes and expires consumer01's
	// earlier certificates.
	pki, err := newDevPKI(t.TempDir(), devpki.Options{KeyBits: 1024, Hosts: []string{pubCN, c1, c2}})
	if err != nil {
		t.Fatal(err)
	}
	load := func(name string) *Signer {
		s, err := LoadSigner(pki.Dir, name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := pki.IssueExpired(c1); err != nil {
		t.Fatal(err)
	}
	expired := load(c1)
	if err := pki.Issue(c1); err != nil {
		t.Fatal(err)
	}
	revoked := load(c1)
	if err := pki.Revoke(c1); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(c1); err != nil {
		t.Fatal(err)
	}
	genuine := load(c1)
	wrongCN := load(c2)
	roguePKI, err := newDevPKI(t.TempDir(), devpki.Options{KeyBits: 1024, Hosts: []string{c1}})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := LoadSigner(roguePKI.Dir, c1)
	if err != nil {
		t.Fatal(err)
	}

	n := newTestNet(t)
	n.pki = pki
	raw, ep := rawPub(t)
	// Mallory sits where every ACK listener listens, whoever the
	// recipients: on the relay's outbound side.
	n.endpoints["relay_outbound"] = []string{ep}
	pub := n.start(pubCN)
	consumer := n.start(c1)
	ackTopic := pub.ackTopic

	kinds := map[string]func(id string) []byte{
		"wrong CN":      func(id string) []byte { return forgedAck(t, ackTopic, id, wrongCN, nil) },
		"untrusted CA":  func(id string) []byte { return forgedAck(t, ackTopic, id, rogue, nil) },
		"revoked":       func(id string) []byte { return forgedAck(t, ackTopic, id, revoked, nil) },
		"expired":       func(id string) []byte { return forgedAck(t, ackTopic, id, expired, nil) },
		"other msg_id":  func(id string) []byte { return forgedAck(t, ackTopic, id+"-other", genuine, nil) },
		"unsigned":      func(id string) []byte { return forgedAck(t, ackTopic, id, nil, nil) },
		"wrong topic":   func(id string) []byte { return forgedAck(t, ackTopic+".x", id, genuine, nil) },
		"not an object": func(id string) []byte { return []byte(`["` + id + `"]`) },
		"tampered": func(id string) []byte {
			return forgedAck(t, ackTopic, id+"-signed", genuine, func(f map[string]any) {
				f[fieldMsg] = map[string]any{"ack_msg_id": id}
			})
		},
	}
	// flood sends every kind of forgery for whatever publish is waiting,
	// learning its msg_id from the publisher's own stream, until stop.
	flood := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		wg.Add(1)
		watch := n.start("")
		ids := tail(t, watch, "", WithoutValidation())
		go func() {
			defer wg.Done()
			var id string
			for {
				select {
				case <-stop:
					return
				case m := <-ids:
					if m.IsGilmsg() && !isAckTopic(m.Topic) {
						id = m.MsgID
					}
				case <-time.After(2 * time.Millisecond):
				}
				if id == "" {
					continue
				}
				for name, k := range kinds {
					frame := ackTopic
					if name == "wrong topic" {
						frame += ".x" // what the body says: it gets past the frame check
					}
					raw.SendMessage(frame, string(k(id)))
				}
			}
		}()
		return &wg
	}

	t.Run("recipient down", func(t *testing.T) {
		stop := make(chan struct{})
		wg := flood(stop)
		_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(time.Second))
		close(stop)
		wg.Wait()
		var te *AckTimeoutError
		if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c1 {
			t.Fatalf("err = %v: forged ACKs must not complete the publish", err)
		}
		rejected := pub.Stats().AcksRejected
		for _, reason := range []string{"not a recipient", "invalid: certificate", "invalid: revoked", "invalid: expired",
			"unknown msg_id", "invalid: unsigned", "wrong topic", "invalid: signature"} {
			if rejected[reason] == 0 {
				t.Errorf("no ACK rejected as %q: %v", reason, rejected)
			}
		}
		// A body that is no envelope never reaches the ACK router.
		if pub.Stats().Invalid[ReasonMalformed] == 0 {
			t.Error("the non-object ACKs were not counted as malformed")
		}
		if s := pub.Stats(); s.AcksMatched != 0 {
			t.Fatalf("%d forged ACKs matched", s.AcksMatched)
		}
		var total uint64
		for _, c := range rejected {
			total += c
		}
		t.Logf("forged ACKs rejected: %d %v, malformed %d", total, rejected, pub.Stats().Invalid[ReasonMalformed])
	})

	t.Run("recipient up", func(t *testing.T) {
		var cs consumerSet
		cs.run(t, c1, consumer)
		stop := make(chan struct{})
		wg := flood(stop)
		r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Acks) != 1 || r.Acks[0].Recipient != c1 {
			t.Fatalf("acks %v", r.Acks)
		}
	})
}

// An ACK replayed from an earlier publish never completes a later one.
func TestReplayedAckNeverCompletesLaterPublish(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	// Mallory sits where every ACK listener listens, whoever the
	// recipients: on the relay's outbound side.
	n.endpoints["relay_outbound"] = []string{ep}
	pub := n.start(pubCN)
	consumer := n.start(c1)
	spy := n.start("")
	acks := tail(t, spy, pub.ackTopic, WithoutValidation())
	var cs consumerSet
	cs.run(t, c1, consumer)

	first, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var recorded []byte
	waitFor(t, "the first ACK to be recorded", func() bool {
		select {
		case m := <-acks:
			if p, _ := m.Msg().(map[string]any); p["ack_msg_id"] == first.MsgID {
				recorded = m.Body
			}
		default:
		}
		return recorded != nil
	})
	consumer.Close()

	stop := sendEvery(raw, 2*time.Millisecond, pub.ackTopic, string(recorded))
	_, err = pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(500*time.Millisecond))
	stop()
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("err = %v: a replayed ACK completed a later publish", err)
	}
	if pub.Stats().AcksRejected["unknown msg_id"] == 0 {
		t.Fatal("the replayed ACKs were not seen and rejected")
	}
}

// Each class of bad input is skipped and counted while the bus keeps
// serving valid traffic; an oversized message costs the sender its
// connection, which comes back.
func TestHostileInputClasses(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["hostile"] = []string{ep}
	pub := n.start(pubCN)
	sub := n.start("", WithMaxMessageSize(64<<10))
	msgs := tail(t, sub, "")
	valid := func(i int) string {
		out, err := pub.prepare(context.Background(), "x", map[string]any{"i": i}, &pubOptions{}, prepFlags{sign: true})
		if err != nil {
			t.Fatal(err)
		}
		return string(out.body)
	}
	// expect sends frames, then a valid message on the same connection,
	// and waits for the valid one: everything before it was handled.
	i := 0
	expect := func(frames ...string) {
		t.Helper()
		i++
		want := i
		deadline := time.Now().Add(10 * time.Second)
		for {
			if len(frames) > 0 {
				raw.SendMessage(frames)
			}
			raw.SendMessage(pub.fullTopic("x", ""), valid(want))
			select {
			case m := <-msgs:
				var v struct{ I int }
				m.Decode(&v)
				if v.I == want {
					return
				}
				continue
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no valid message %d after %d frames of junk", want, len(frames))
			}
		}
	}
	expect() // the raw PUB's subscription is in

	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	classes := map[string][]string{
		"1 frame":             {"only"},
		"3 frames":            {"t", "{}", "more"},
		"non-UTF-8":           {"t", "{\"topic\":\"\xff\"}"},
		"non-JSON":            {"t", "<xml/>"},
		"JSON not an object":  {"t", `"just a string"`},
		"missing fields":      {"t", `{"msg":{}}`},
		"wrong-typed fields":  {"t", `{"topic":[],"msg_id":5,"i":"one","timestamp":{}}`},
		"deeply nested":       {"t", `{"msg":` + deep + `}`},
		"huge integer":        {"t", `{"msg":` + strings.Repeat("9", 5000) + `}`},
		"unsigned but valid":  {"t", `{"topic":"t","msg":{},"msg_id":"x"}`},
		"garbage certificate": {"t", `{"topic":"t","msg":{},"crypto":"x509","signature":"AAAA","certificate":"!!"}`},
	}
	before := sub.Stats()
	for name, frames := range classes {
		t.Run(name, func(t *testing.T) { expect(frames...) })
	}
	after := sub.Stats()
	var invalid uint64
	for r, c := range after.Invalid {
		invalid += c - before.Invalid[r]
	}
	if invalid < uint64(len(classes)) {
		t.Errorf("counted %d invalid messages, sent at least %d", invalid, len(classes))
	}
	t.Logf("%d classes of bad input, %d invalid messages counted: %v", len(classes), invalid, after.Invalid)

	t.Run("oversized", func(t *testing.T) {
		raw.SendMessage("t", strings.Repeat("x", 100<<10))
		// libzmq drops the sender's connection; the subscription makes it
		// again, and valid traffic flows.
		expect()
	})

	t.Run("flood", func(t *testing.T) {
		for j := range 2000 {
			raw.SendMessage("t", "junk "+strconv.Itoa(j))
		}
		expect()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pub.WaitSubscribers(ctx, "x", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctxT(t), "x", map[string]any{"i": -1}); err != nil {
			t.Fatal(err)
		}
		for {
			m := receive(t, msgs)
			var v struct{ I int }
			m.Decode(&v)
			if v.I == -1 && m.Signer == pubCN {
				break
			}
		}
	})
}

// A validly signed message sent under a topic frame that is not its own
// (the SUB filters on the frame, the application reads the signed topic)
// must not reach a subscription whose prefix its signed topic lacks: the
// Subscription's documented contract is the messages whose full topic
// starts with its prefix.
func TestTopicFrameMismatch(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["mallory"] = []string{ep}
	pub := n.start(pubCN)
	watcher := n.start("")
	prefix := pub.fullTopic("update", "bodhi")
	msgs := tail(t, watcher, prefix)
	sign := func(topic, modname string) string {
		out, err := pub.prepare(context.Background(), topic, map[string]any{"from": modname}, &pubOptions{modname: modname}, prepFlags{sign: true})
		if err != nil {
			t.Fatal(err)
		}
		return string(out.body)
	}
	// Signed by a trusted peer, but for another topic: a replay of real
	// traffic under a misleading frame.
	other := sign("build", "koji")
	marker := sign("update", "bodhi")
	var wrong []string
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		raw.SendMessage(prefix, other)
		raw.SendMessage(prefix, marker)
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m.Topic, prefix) {
				wrong = append(wrong, m.Topic)
				continue
			}
			got = true
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the marker never arrived")
		}
	}
	if len(wrong) > 0 {
		t.Fatalf("a subscription to %q yielded %d messages on %q", prefix, len(wrong), wrong[0])
	}
	if watcher.Stats().Invalid[ReasonMalformed] == 0 {
		t.Error("the mismatched message was not counted as invalid")
	}
}

// Hostile messages must not make the receiver keep them: each of these is
// rejected for its certificate, and each certificate field is different,
// so that a cache of chain results by certificate sees a new one every
// time. Once they are read, the heap is about where it was, whether the
// bulk is in the payload or in the certificate field itself.
func TestRejectedInputIsNotKept(t *testing.T) {
	const total, size = 600, 64 << 10 // under the raw PUB's default high-water mark
	pad := strings.Repeat("x", size)
	for _, tc := range []struct {
		name     string
		msg, crt string // %d in crt makes each certificate field different
	}{
		{"large payload", pad, "not a certificate %d"},
		{"large certificate field", "", "not a certificate %d " + pad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			raw, ep := rawPub(t)
			n.endpoints["mallory"] = []string{ep}
			pub := n.start(pubCN)
			sub := n.start("")
			msgs := tail(t, sub, "")
			awaitRawPeer(t, raw, pub, msgs)
			heap0, _ := heapAndGoroutines()
			before := sub.Stats().Invalid[ReasonCertificate]
			for i := range total {
				raw.SendMessage("x", fmt.Sprintf(`{"topic":"x","msg":{"pad":"%s"},"msg_id":"2026-%d","crypto":"x509","signature":"AAAA","certificate":"%s"}`,
					tc.msg, i, fmt.Sprintf(tc.crt, i)))
			}
			waitFor(t, "every hostile message to be rejected", func() bool {
				return sub.Stats().Invalid[ReasonCertificate] == before+total
			})
			heap1, _ := heapAndGoroutines()
			grown := int64(heap1) - int64(heap0)
			t.Logf("%d rejected messages of %d kB: heap %d → %d MB", total, size>>10, heap0>>20, heap1>>20)
			if limit := int64(16 << 20); grown > limit {
				t.Fatalf("heap grew by %d MB after rejecting %d messages of %d kB: something keeps what it rejected", grown>>20, total, size>>10)
			}
		})
	}
}

// An unsigned message on the ACK topic with seq_id 2^62, from a PUB where
// the ACK listener listens, stalls nothing: the listener tracks no seq_ids
// (an ACK's seq_id means nothing to it), so the next reliable publish is
// ACKed, and Close returns.
func TestAckListenerIgnoresSeqIDs(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["relay_outbound"] = []string{ep}
	// With a replay server named for the forger's endpoint, a listener
	// that tracked seq_ids would try to fill 2..2^62-1 from it.
	n.mutate = func(c *Config) { c.ReplayEndpoints = map[string]string{"relay_outbound": deadAddr(t)} }
	pub := n.start(pubCN)
	_, buses := n.consumers(t, c1)
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	forged := func(seq int64) string {
		body := forgedAck(t, pub.ackTopic, "2026-none", nil, func(f map[string]any) {
			f[fieldSeqID] = json.Number(strconv.FormatInt(seq, 10))
		})
		return string(body)
	}
	before := pub.Stats().AcksReceived
	waitFor(t, "the listener to take a forged ACK", func() bool {
		raw.SendMessage(pub.ackTopic, forged(1))
		return pub.Stats().AcksReceived > before
	})
	raw.SendMessage(pub.ackTopic, forged(1<<62))
	// Sent after the forged one, on the same path, so it reaches the
	// listener after it.
	received := pub.Stats().AcksReceived
	waitFor(t, "the listener to take the huge seq_id", func() bool {
		raw.SendMessage(pub.ackTopic, forged(3))
		return pub.Stats().AcksReceived > received+1
	})
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatalf("reliable publish after seq_id 2^62 on the ACK topic: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- pub.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting after 10s")
	}
	buses[0].Close()
}

// Close of a subscription whose reader waits on a replay server that never
// answers returns at once, not when the replay timeout runs out.
func TestCloseDoesNotWaitOnReplayServer(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["hostile"] = []string{ep}
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := zctx.NewSocket(zmq.REP)
	if err != nil {
		t.Fatal(err)
	}
	rep.SetLinger(0)
	if err := rep.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	repEP, _ := rep.GetLastEndpoint()
	t.Cleanup(func() { rep.Close(); zctx.Term() })
	n.mutate = func(c *Config) { c.ReplayEndpoints = map[string]string{"hostile": repEP} }
	b := n.start("")
	sub, err := b.Subscribe(ctxT(t), "", WithoutValidation(), WithoutAck(), WithReplayTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	msg := func(seq int64) string {
		return string(forgedAck(t, "org.example.x", "", nil, func(f map[string]any) {
			f[fieldSeqID] = json.Number(strconv.FormatInt(seq, 10))
			f[fieldMsgID] = fmt.Sprintf("2026-%d", seq)
		}))
	}
	got := make(chan error, 16)
	go func() {
		defer close(got)
		for {
			_, err := sub.Next(context.Background())
			got <- err
			if errors.Is(err, ErrClosed) {
				return
			}
		}
	}()
	waitFor(t, "the first message", func() bool {
		raw.SendMessage("org.example.x", msg(1))
		select {
		case err := <-got:
			return err == nil
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	raw.SendMessage("org.example.x", msg(3)) // 2 is missing: asked for, never answered
	rep.SetRcvtimeo(10 * time.Second)
	if _, err := rep.RecvMessageBytes(0); err != nil {
		t.Fatalf("no replay request: %v", err)
	}
	closed := make(chan struct{})
	go func() { sub.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits on the replay server (a minute's timeout)")
	}
	for range got { // Next ends with ErrClosed
	}
}
