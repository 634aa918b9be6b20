package gilmsg

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

// FuzzFrameToValidation drives arbitrary (topic, body) frame pairs through
// the subscription's own receive path (Subscription.handle: frame count,
// ParseEnvelope, dedupe, Validator.Validate), with validation under the
// vectors' config and no sockets. It is seeded with the vectors' frames,
// and each of those must get Python's verdict.
//
// What must hold for any input: no panic; a message is either yielded or
// counted as invalid, never dropped without a word; a yielded message
// carries the signature of a vector whose signed text is its own (no
// forgery through mutation) under its own topic frame; and the same frames
// a second time are never yielded again. The verdicts and signed texts
// compared with are Python's (pythonOracle), not this package's.
func FuzzFrameToValidation(f *testing.F) {
	cfg := vectorsConfig(f, "testdata/pki")
	val := NewValidator(cfg)
	oracle := newPythonOracle(f)
	for body, v := range oracle.verdicts {
		f.Add(v.Topic, []byte(body))
	}
	f.Add("", []byte(nil))
	f.Add("org.fedoraproject.dev.x", []byte(`{"topic":"org.fedoraproject.dev.x","msg":{}}`))

	f.Fuzz(func(t *testing.T, topic string, body []byte) {
		// A fresh subscription per input, so that the verdict does not
		// depend on what the fuzzer fed before; the validator (and its
		// chain cache) is shared, as on a long-lived bus.
		b := &Bus{cfg: cfg, validator: val, log: slog.New(slog.DiscardHandler)}
		s := &Subscription{bus: b, validate: true, eps: []namedEndpoint{{name: "fuzz", addr: "tcp://fuzz:1"}},
			seen: newIDSet(16)}
		frames := [][]byte{[]byte(topic), body}
		ctx := context.Background()

		m, ok, err := s.handle(ctx, 0, frames)
		st := b.Stats()
		if st.Received != 1 {
			t.Fatalf("received counted %d times", st.Received)
		}
		signer := ""
		if ok && m != nil {
			signer = m.Signer
		}
		if err := oracle.checkVerdict(topic, body, ok, signer); err != nil {
			t.Fatal(err)
		}
		if !ok {
			var invalid uint64
			for _, c := range st.Invalid {
				invalid += c
			}
			if invalid != 1 {
				t.Fatalf("skipped without being counted as invalid exactly once: %v", st.Invalid)
			}
			return
		}
		if err != nil {
			t.Fatalf("yielded with an error although invalid messages are not surfaced: %v", err)
		}
		if m == nil || m.Envelope == nil || m.Signer == "" {
			t.Fatalf("yielded a message without an envelope or signer: %+v", m)
		}
		if !bytes.Equal(m.Body, body) {
			t.Fatal("yielded a body other than the frame received")
		}
		if m.Topic != topic {
			// The SUB filtered on the frame: the signed topic must be it.
			t.Fatalf("yielded a message on %q under the topic frame %q", m.Topic, topic)
		}
		if err := oracle.checkValid(body, m.Signer); err != nil {
			t.Fatal(err)
		}

		// The same frames again, as a resend or a replay within the window.
		if m2, again, _ := s.handle(ctx, 0, frames); again && m.MsgID != "" {
			t.Fatalf("msg_id %q yielded twice (%p, %p)", m.MsgID, m, m2)
		}
		if m.MsgID != "" && b.Stats().Duplicates != 1 {
			t.Fatalf("the second copy was not counted as a duplicate: %+v", b.Stats())
		}
	})
}
