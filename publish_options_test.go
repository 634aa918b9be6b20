package gilmsg

import "testing"

// TestPublishAsAnotherBus: the options a bridge uses to republish a
// message from another bus keep its id and topic, set its username, and
// still sign; a second copy under the same id is dropped as a duplicate.
func TestPublishAsAnotherBus(t *testing.T) {
	n := newTestNet(t)
	pub := n.start("publisher01.example.org")
	sub := n.start("")
	msgs := tail(t, sub, "")
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}
	const id, topic = "2026-from-elsewhere", "org.fedoraproject.prod.bodhi.update.comment"
	for range 2 {
		if _, err := pub.Publish(ctxT(t), topic, map[string]any{"n": 1},
			WithMsgID(id), WithUsername("amqp-bridge"), WithExactTopic()); err != nil {
			t.Fatal(err)
		}
	}
	// A plain message after the two: it arriving first would mean the
	// duplicate was not dropped.
	if _, err := pub.Publish(ctxT(t), "after", nil); err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs)
	if m.MsgID != id || m.Topic != topic || m.Username != "amqp-bridge" || m.Signer != "publisher01.example.org" {
		t.Errorf("got msg_id %q topic %q username %q signer %q", m.MsgID, m.Topic, m.Username, m.Signer)
	}
	if m := receive(t, msgs); m.MsgID == id {
		t.Errorf("the second copy of %s was yielded", id)
	}
}
