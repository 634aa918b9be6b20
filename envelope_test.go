package gilmsg

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gilmsg/gilmsg-go/internal/jsonval"
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
		// msg is checked, not decoded, by the fast path: the shapes it must
		// accept and reject exactly as DecodeJSON does.
		`{"msg":[1,{"a\u00e9":"\ud800"},-0,1e5,true,false,null,NaN,-Infinity,Infinity,[],{}]}`,
		`{"msg":[1,]}`, `{"msg":{"a" 1}}`, `{"msg":{"a":1,}}`, `{"msg":"\x"}`, `{"msg":01}`,
		`{"msg":-}`, `{"msg":tru}`, `{"msg":"a` + "\x01" + `"}`, `{"msg":[1 2]}`, `{"msg":}`,
		`{"msg":` + strings.Repeat("[", MaxJSONDepth-1) + strings.Repeat("]", MaxJSONDepth-1) + `}`,
		`{"msg":` + strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth) + `}`,
		`{"msg":` + strings.Repeat("9", maxJSONIntDigits) + `}`,
		`{"msg":-` + strings.Repeat("9", maxJSONIntDigits+1) + `}`,
		`{"i":-0,"timestamp":-9223372036854775808}`, `{"timestamp":9223372036854775808}`,
		`{"i":00}`, `{"i":-}`, `{"i":-Infinity}`, `{"i":1.0e0,"timestamp":12}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast := parseEnvelopeFast(string(body), nil)
		if fast == nil {
			return // the general path decides alone
		}
		v, err := DecodeJSON(body)
		if err != nil {
			t.Fatalf("fast path accepted what DecodeJSON rejects: %v", err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("fast path accepted a JSON %s", jsonval.Kind(v))
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
		var raw any
		if r := fast.RawMsg(); r != nil {
			if raw, err = DecodeJSON(r); err != nil {
				t.Fatalf("RawMsg %s: %v", r, err)
			}
		}
		if !reflect.DeepEqual(raw, slow.Msg()) {
			t.Fatalf("RawMsg decodes to %#v, want %#v", raw, slow.Msg())
		}
		if !reflect.DeepEqual(fast.Msg(), slow.Msg()) || !reflect.DeepEqual(fast.Fields(), slow.Fields()) {
			t.Fatalf("decoded values differ:\nfast %#v\nslow %#v", fast.Fields(), slow.Fields())
		}
	})
}

// Msg is decoded on first use, once, from any number of goroutines at
// once; RawMsg and Decode read the text without decoding it.
func TestEnvelopeMsgLazy(t *testing.T) {
	body := `{"i":1,"msg":{"n":7,"s":"\u00e9","l":[true,null]},"msg_id":"2026-x","topic":"a.b"}`
	e, err := ParseEnvelope([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if e.msg != nil {
		t.Fatalf("msg decoded by ParseEnvelope: %#v", e.msg)
	}
	if got, want := string(e.RawMsg()), `{"n":7,"s":"\u00e9","l":[true,null]}`; got != want {
		t.Errorf("RawMsg %s, want %s", got, want)
	}
	var v struct {
		N int
		S string
		L []any
	}
	if err := e.Decode(&v); err != nil || v.N != 7 || v.S != "é" || len(v.L) != 2 || v.L[0] != true {
		t.Errorf("Decode: %+v, %v", v, err)
	}
	if e.msg != nil {
		t.Fatal("RawMsg or Decode decoded msg")
	}
	want := map[string]any{"n": json.Number("7"), "s": "é", "l": []any{true, nil}}
	const n = 8
	got := make([]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				got[i] = e.Fields()[fieldMsg]
			} else {
				got[i] = e.Msg()
			}
		}()
	}
	wg.Wait()
	for i, g := range got {
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("goroutine %d got %#v", i, g)
		}
		if reflect.ValueOf(g).UnsafePointer() != reflect.ValueOf(got[0]).UnsafePointer() {
			t.Errorf("goroutine %d got a map of its own: decoded twice", i)
		}
	}

	// Without msg: nothing to decode.
	e, err = ParseEnvelope([]byte(`{"topic":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.Msg() != nil || e.RawMsg() != nil || e.Decode(&v) != nil {
		t.Errorf("absent msg: Msg %v, RawMsg %s", e.Msg(), e.RawMsg())
	}
	// A body read by the general path (a duplicate key) has its msg too.
	e, err = ParseEnvelope([]byte(`{"topic":"a","topic":"a","msg":[1, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.RawMsg()) != "[1,2]" || !reflect.DeepEqual(e.Msg(), []any{json.Number("1"), json.Number("2")}) {
		t.Errorf("general path: RawMsg %s, Msg %#v", e.RawMsg(), e.Msg())
	}
	// A msg that is not JSON fails the parse, as before.
	for _, bad := range []string{`{"msg":[1,]}`, `{"msg":{"a":01}}`, `{"msg":"\q"}`,
		`{"msg":` + strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth) + `}`} {
		if _, err := ParseEnvelope([]byte(bad)); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("%s: err %v, want ErrInvalidJSON", bad, err)
		}
	}
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
		got, seqAt, err := appendPlainEnvelope([]byte("x"), tc.topic, raw, 1796102716, tc.msgID, -3, tc.username, tc.gilmsg)
		if err != nil || string(got) != "x"+string(want) {
			t.Errorf("got %s, %v\nwant x%s", got, err, want)
		}
		// A store splices the seq_id in: the same bytes as the map with it.
		for _, seq := range []int64{1, 42, 1 << 62} {
			fields[fieldSeqID] = seq
			want, err := MarshalCanonical(fields)
			if err != nil {
				t.Fatal(err)
			}
			if spliced := spliceSeqID(got, seqAt, seq); string(spliced) != "x"+string(want) {
				t.Errorf("seq_id %d spliced: %s\nwant x%s", seq, spliced, want)
			}
		}
	}
	if _, _, err := appendPlainEnvelope(nil, "bad\xff", []byte("{}"), 0, "", 0, "", false); err == nil {
		t.Error("a topic that is not UTF-8 was written")
	}
}

// SeqID of a parsed body answers as the general decoder's fields do, for
// every shape of seq_id, without building the fields (which would decode
// the payload: recovery asks every message its seq_id).
func TestSeqIDWithoutFields(t *testing.T) {
	for _, tc := range []string{
		`{"msg":{"a":1},"seq_id":5,"topic":"t"}`,
		`{"msg":{},"seq_id":4611686018427387904}`,
		`{"msg":{},"seq_id":-3}`,
		`{"msg":{},"seq_id":"7"}`,
		`{"msg":{},"seq_id":7.5}`,
		`{"msg":{},"seq_id":7.0}`,
		`{"msg":{},"seq_id":1e30}`,
		`{"msg":{},"seq_id":null}`,
		`{"msg":{},"seq_id":[1]}`,
		`{"msg":{},"seq_id":1,"seq_id":2}`,
		`{"msg":{},"seq_id":1,"seq_id":"x"}`,
		`{"msg":{}}`,
	} {
		slow, err := parseEnvelopeSlow([]byte(tc))
		if err != nil {
			t.Fatalf("%s: %v", tc, err)
		}
		wantSeq, wantOK := slow.SeqID()
		e := parseEnvelopeFast(tc, nil)
		if e == nil {
			t.Fatalf("%s: the fast path declined it", tc)
		}
		seq, ok := e.SeqID()
		if seq != wantSeq || ok != wantOK {
			t.Errorf("%s: SeqID %d, %v; the decoded fields say %d, %v", tc, seq, ok, wantSeq, wantOK)
		}
		if e.fieldMap != nil {
			t.Errorf("%s: SeqID built the fields", tc)
		}
	}
}

// TestParseEnvelopeOwnsItsInput: ParseEnvelope's envelope does not change
// when the caller reuses its buffer (it copies); parseEnvelopeShared's,
// made for a received body nobody changes, reads the same as
// ParseEnvelope's for every Python vector.
func TestParseEnvelopeOwnsItsInput(t *testing.T) {
	n := 0
	for body := range newPythonOracle(t).verdicts {
		want, err := ParseEnvelope([]byte(body))
		shared, serr := parseEnvelopeShared([]byte(body), new(Envelope))
		if (err == nil) != (serr == nil) {
			t.Fatalf("%.60q: ParseEnvelope err %v, parseEnvelopeShared err %v", body, err, serr)
		}
		if err != nil {
			continue
		}
		n++
		if want.Topic != shared.Topic || want.MsgID != shared.MsgID || want.I != shared.I ||
			!reflect.DeepEqual(want.Fields(), shared.Fields()) {
			t.Fatalf("%.60q: shared parse differs", body)
		}
		buf := []byte(body)
		e, err := ParseEnvelope(buf)
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 'X'
		}
		if e.Topic != want.Topic || e.MsgID != want.MsgID || !reflect.DeepEqual(e.Fields(), want.Fields()) {
			t.Fatalf("%.60q: the envelope changed with the caller's buffer", body)
		}
	}
	if n == 0 {
		t.Fatal("no vector parsed")
	}
}
