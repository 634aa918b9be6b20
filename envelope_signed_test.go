package gilmsg

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
)

// FuzzSignedTextFast checks the signed text written from a parsed
// envelope against the general path (appendSignedText over Fields, which
// the Python vectors hold to Python's text): whenever the fast path takes
// an envelope, with or without the fields added after signing, its text
// is the general path's, byte for byte.
func FuzzSignedTextFast(f *testing.F) {
	for body := range newPythonOracle(f).verdicts {
		f.Add([]byte(body))
	}
	for _, s := range signedTextSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env := parseEnvelopeFast(string(body), nil)
		if env == nil {
			return
		}
		for _, drop := range [][]string{nil, {fieldGilmsgVersion}, {fieldSeqID}, {fieldGilmsgVersion, fieldSeqID}} {
			fast, ok := env.appendSignedTextFast(nil, drop)
			if !ok {
				continue
			}
			// A copy of the envelope the fast path never saw: Fields
			// built first turns the fast path off.
			slowEnv := parseEnvelopeFast(string(body), nil)
			slow, err := appendSignedText(nil, slowEnv.Fields(), drop...)
			if err != nil {
				t.Fatalf("fast path took what the general path rejects (%v): %s", err, body)
			}
			if !bytes.Equal(fast, slow) {
				t.Fatalf("drop %v:\nfast %s\nslow %s", drop, fast, slow)
			}
		}
	})
}

var signedTextSeeds = []string{
	`{}`, `{"topic":"a"}`,
	`{"certificate":"c","crypto":"x509","i":1,"msg":{"a":1},"msg_id":"m","signature":"s","timestamp":2,"topic":"t","username":"u"}`,
	`{"gilmsg_version":"0.1.2","i":-0,"msg":null,"timestamp":-9223372036854775808,"topic":"t\n\"\\"}`,
	`{"msg":{"b":1,"a":2}}`, `{"msg":{"a":1,"a":2}}`, `{"msg":{"a":1.5}}`, `{"msg":{"a":-0}}`, `{"msg":[1e5]}`,
	`{"msg":"\u00e9"}`, `{"msg":"é"}`, `{"msg":"\/"}`, `{"msg":"a\tb\r\n\b\f\"\\"}`, `{"msg":{"a\n":1}}`,
	`{"msg":{"\u0061":1}}`, `{"msg":[NaN,Infinity,-Infinity]}`, `{"msg":"` + "\x7f" + `"}`,
	`{"msg": {"a":1}}`, `{"msg":{"a": 1}}`, `{"msg":[1, 2]}`, `{"msg":{"":0,"a":[],"b":{},"c":[true,false,null,""]}}`,
	`{"msg":` + strings.Repeat("[", MaxJSONDepth-1) + strings.Repeat("]", MaxJSONDepth-1) + `}`,
	`{"msg":-` + strings.Repeat("9", maxJSONIntDigits) + `}`,
	`{"i":1.0,"msg":1}`, `{"timestamp":1e3}`, `{"gilmsg_version":1}`, `{"seq_id":5,"msg":1}`, `{"x":1}`,
	`{"username":"\u00e9","crypto":"x\u0000"}`,
}

// TestSignedTextFast: the text of every seed the fast path takes is the
// general path's, and the messages this package and Python fedmsg send
// (sorted keys, integer fields, a canonical payload) take it; their
// validation builds no Fields map.
func TestSignedTextFast(t *testing.T) {
	for _, s := range signedTextSeeds {
		env := parseEnvelopeFast(s, nil)
		if env == nil {
			continue
		}
		fast, ok := env.appendSignedTextFast(nil, nil)
		if !ok {
			continue
		}
		slow, err := appendSignedText(nil, parseEnvelopeFast(s, nil).Fields())
		if err != nil || !bytes.Equal(fast, slow) {
			t.Errorf("%s:\nfast %s\nslow %s (%v)", s, fast, slow, err)
		}
	}
	for _, s := range []string{`{"msg":{"b":1,"a":2}}`, `{"msg":{"a":1.5}}`, `{"msg":"é"}`, `{"msg":{"a":-0}}`, `{"seq_id":5}`} {
		if _, ok := parseEnvelopeFast(s, nil).appendSignedTextFast(nil, nil); ok {
			t.Errorf("%s: the fast path took a payload that is not canonical, or an unknown key", s)
		}
	}

	pki := testPKI(t)
	signer, err := LoadSigner(pki.Dir, e2ePublisher)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]any{
		fieldTopic: "org.example.dev.bench.msg", fieldMsg: e2ePayload(), fieldMsgID: "2026-x", fieldTimestamp: 1,
		fieldI: 2, fieldUsername: "u", fieldGilmsgVersion: ProtocolVersion,
	}
	if err := signer.Sign(fields); err != nil {
		t.Fatal(err)
	}
	body, err := MarshalCanonical(fields)
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := env.appendSignedTextFast(nil, nil); !ok {
		t.Fatalf("a message signed here does not take the fast path: %s", body)
	}
	v := NewValidator(pki.Config())
	if err := v.CheckTrust(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cn, err := v.Validate(env); err != nil || cn != e2ePublisher {
		t.Fatalf("Validate = %q, %v", cn, err)
	}
	if env.fieldsBuilt.Load() {
		t.Error("validating a message signed here built its Fields map")
	}
}

// TestCertificateMemo: a certificate field read before is not decoded
// again (no allocation), and a different text, even in the same slot,
// is decoded for itself.
func TestCertificateMemo(t *testing.T) {
	cert := strings.Repeat("MIIDazCCAlOgAwIBAgIUQ0VSVElGSUNBVEUgVEVYVCBGT1IgVEhFIE1FTU8gVEVTVA==", 30)
	wrapped := base64Wrap76([]byte(cert))
	field := strings.ReplaceAll(wrapped, "\n", `\n`)
	body := []byte(`{"certificate":"` + field + `","topic":"t"}`)
	var env Envelope
	if e, err := parseEnvelopeShared(body, &env); err != nil || e.Certificate != wrapped {
		t.Fatalf("certificate %q, %v", e.Certificate, err)
	}
	// AllocsPerRun counts the whole process's allocations: a goroutine
	// another test left running can add some to one measurement, never
	// take the memo's away, so the least of a few is the memo's.
	allocs := math.Inf(1)
	for try := 0; try < 5 && allocs > 0; try++ {
		allocs = min(allocs, testing.AllocsPerRun(20, func() {
			env = Envelope{}
			if e, err := parseEnvelopeShared(body, &env); err != nil || e.Certificate != wrapped {
				t.Fatalf("certificate %q, %v", e.Certificate, err)
			}
		}))
	}
	if allocs != 0 {
		t.Errorf("reading a known certificate allocated %v times", allocs)
	}
	// Same length and the same bytes where the slot is picked: the same
	// slot, another certificate.
	other := []byte(strings.Replace(string(body), "MIID", "MIIE", 1))
	e, err := ParseEnvelope(other)
	if want := strings.Replace(wrapped, "MIID", "MIIE", 1); err != nil || e.Certificate != want {
		t.Fatalf("another certificate in the same slot read as %q (%v), want %q", e.Certificate, err, want)
	}
}

// TestCertificateMemoBound: a certificate field longer than any real one
// is read correctly but not remembered, so a peer cannot make the memo
// hold megabytes.
func TestCertificateMemoBound(t *testing.T) {
	big := strings.Repeat(`A\n`, maxCertMemo)
	body := []byte(`{"certificate":"` + big + `"}`)
	e, err := ParseEnvelope(body)
	if err != nil || e.Certificate != strings.Repeat("A\n", maxCertMemo) {
		t.Fatalf("certificate of %d bytes read wrong (%v)", len(e.Certificate), err)
	}
	for i := range certStrings {
		if m := certStrings[i].Load(); m != nil && len(m.raw) > maxCertMemo+2 {
			t.Fatalf("slot %d keeps %d bytes", i, len(m.raw))
		}
	}
}
