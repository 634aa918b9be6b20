package gilmsg

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseEnvelopeFast checks the fast path of ParseEnvelope against the
// general one (DecodeJSON, then the map): whatever the fast path accepts,
// the general path accepts too, with the same typed fields, the same
// gilmsg_version presence and the same Fields map. Seeded with the Python
// vectors' bodies and with the shapes the fast path hands over.
func FuzzParseEnvelopeFast(f *testing.F) {
	for body := range newPythonOracle(f).verdicts {
		f.Add([]byte(body))
	}
	for _, s := range []string{
		`{}`, ` {"topic":"a","msg":{"x":[1,2.5,null]},"i":3,"timestamp":1.0} `,
		`{"topic":"a","topic":"b"}`, `{"topic":null}`, `{"i":"1"}`, `{"i":1e400}`,
		`{"gilmsg_version":1}`, `{"gilmsg_version":"0.1.2","seq_id":4,"seq_id":5}`,
		`{"t\u006fpic":"x","msg_id":"a\nb"}`, `[1]`, `{"msg":{}} x`, `{"a":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast := parseEnvelopeFast(string(body))
		if fast == nil {
			return // the general path decides alone
		}
		v, err := DecodeJSON(body)
		if err != nil {
			t.Fatalf("fast path accepted what DecodeJSON rejects: %v", err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("fast path accepted a JSON %s", jsonKind(v))
		}
		slow, err := envelopeFromFields(obj)
		if err != nil {
			t.Fatalf("fast path accepted what the general path rejects: %v", err)
		}
		type typed struct {
			Topic, MsgID, Username, Crypto, Signature, Certificate, GilmsgVersion string
			Timestamp, I                                                          int64
			Gilmsg                                                                bool
		}
		of := func(e *Envelope) typed {
			return typed{e.Topic, e.MsgID, e.Username, e.Crypto, e.Signature, e.Certificate,
				e.GilmsgVersion, e.Timestamp, e.I, e.IsGilmsg()}
		}
		if of(fast) != of(slow) {
			t.Fatalf("typed fields differ:\nfast %+v\nslow %+v", of(fast), of(slow))
		}
		if strings.Contains(string(body), "NaN") {
			return // NaN is not DeepEqual to itself
		}
		if !reflect.DeepEqual(fast.Msg, slow.Msg) || !reflect.DeepEqual(fast.Fields(), slow.Fields()) {
			t.Fatalf("decoded values differ:\nfast %#v\nslow %#v", fast.Fields(), slow.Fields())
		}
	})
}

// appendPlainEnvelope writes what MarshalCanonical writes for the same
// map, escapes and key order included.
func TestAppendPlainEnvelope(t *testing.T) {
	for _, tc := range []struct {
		topic, msgID, username string
		msg                    any
		gilmsg                 bool
	}{
		{"org.example.dev.x", "2026-abc", "root", map[string]any{"a": 1, "b": []any{"x"}}, false},
		{"org.example.dev.é\"\\", "id\n\u2028", "ü\x7f", "text", true},
		{"", "", "", nil, true},
	} {
		raw, err := MarshalCanonical(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		fields := map[string]any{
			fieldTopic: tc.topic, fieldMsg: tc.msg, fieldTimestamp: int64(1796102716),
			fieldMsgID: tc.msgID, fieldI: int64(-3), fieldUsername: tc.username,
		}
		if tc.gilmsg {
			fields[fieldGilmsgVersion] = GilmsgVersion
		}
		want, err := MarshalCanonical(fields)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendPlainEnvelope([]byte("x"), tc.topic, raw, 1796102716, tc.msgID, -3, tc.username, tc.gilmsg)
		if err != nil || string(got) != "x"+string(want) {
			t.Errorf("got %s, %v\nwant x%s", got, err, want)
		}
	}
	if _, err := appendPlainEnvelope(nil, "bad\xff", []byte("{}"), 0, "", 0, "", false); err == nil {
		t.Error("a topic that is not UTF-8 was written")
	}
}
