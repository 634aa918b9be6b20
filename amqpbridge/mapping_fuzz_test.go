package amqpbridge

import (
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// FuzzFromAMQP: whatever a delivery holds, FromAMQP answers without
// panicking, either with a DropError of a known reason or with a JSON
// object payload under a year-prefixed msg_id that goes out and back
// through the bus's canonical encoding; and ToAMQP of that payload gives
// the same object back.
func FuzzFromAMQP(f *testing.F) {
	for _, s := range []struct{ id, key, body string }{
		{"x", "a.b", `{"a":1}`}, {"2020-x", "a.b", `{"n":[1,2.5,"é"]}`}, {"", "a.b", `{}`},
		{"x", "", `{}`}, {"x", "a.b", `[1]`}, {"x", "a.b", "\xff\xfe"}, {"x", "a.b", `{"a":1e999}`},
		{"x", "a.b", `{"a":"\ud800"}`}, {"x", "a.b", `{"a":{"a":{"a":{}}}}`}, {"1234-", "k", `{"":null}`},
	} {
		f.Add(s.id, s.key, "", []byte(s.body))
	}
	f.Add("x", "a.b", "latin-1", []byte("{\"a\":\"\xe9\x80\"}"))
	f.Add("x", "a.b", "utf-16", []byte("\xfe\xff\x00{\x00}"))
	f.Add("x", "a.b", "cp1252", []byte("{\"\x81\":1}"))
	reasons := []error{ErrLoop, ErrNoPayload, ErrNoMessageID, ErrBadBody, ErrTooLarge, ErrBadTopic, ErrBadEncoding}
	f.Fuzz(func(t *testing.T, id, key, encoding string, body []byte) {
		d := &amqp.Delivery{MessageId: id, RoutingKey: key, ContentEncoding: encoding, Body: body}
		in, err := FromAMQP(d, 4096, time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			var de *DropError
			if !errors.As(err, &de) || !func() bool {
				for _, r := range reasons {
					if errors.Is(err, r) {
						return true
					}
				}
				return false
			}() {
				t.Fatalf("error %v is not a DropError of a known reason", err)
			}
			return
		}
		if !hasYearPrefix(in.MsgID) || in.Topic != key || in.Msg == nil || strings.HasSuffix(key, ".gilmsg.ack") {
			t.Fatalf("got %+v from id %q key %q", in, id, key)
		}
		// What the bus publish will encode: the topic and the id too.
		if _, err := gilmsg.MarshalCanonical(map[string]any{"topic": in.Topic, "msg_id": in.MsgID}); err != nil {
			t.Fatalf("topic or id does not encode: %v", err)
		}
		canon, err := gilmsg.MarshalCanonical(in.Msg)
		if err != nil {
			t.Fatalf("payload does not encode: %v", err)
		}
		env, err := gilmsg.ParseEnvelope(append(append([]byte(`{"topic":"t","msg_id":"m","msg":`), canon...), '}'))
		if err != nil {
			t.Fatalf("payload does not parse back: %v", err)
		}
		pub, err := ToAMQP(env)
		if err != nil || string(pub.Body) != string(canon) {
			t.Fatalf("ToAMQP: %v, body %s, want %s", err, pub.Body, canon)
		}
	})
}
