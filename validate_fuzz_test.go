package gilmsg

import (
	"bytes"
	"testing"
)

// FuzzValidate drives arbitrary frame-2 bodies through ParseEnvelope and
// Validate, seeded with the vectors. Nothing may panic, and nothing may
// validate that was not signed: a body that validates must carry the
// signature of a vector whose signed text (or, for Python gilmsg's
// messages, the text without gilmsg_version) is its own.
func FuzzValidate(f *testing.F) {
	val := NewValidator(vectorsConfig(f, "testdata/pki"))
	signed := map[string][][]byte{} // decoded signature → texts it covers
	for _, file := range []string{"vectors.jsonl", "gilmsg-compat.jsonl"} {
		for _, v := range loadVectors(f, file) {
			f.Add([]byte(v.Body))
			env, err := ParseEnvelope([]byte(v.Body))
			if err != nil || !v.Valid {
				continue
			}
			sig, _ := decodeB64(env.Signature)
			for _, drop := range [][]string{nil, {fieldGilmsgVersion}} {
				if text, err := signedText(env.Fields(), drop...); err == nil {
					signed[string(sig)] = append(signed[string(sig)], text)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := ParseEnvelope(body)
		if err != nil {
			if ReasonOf(err) != ReasonMalformed {
				t.Fatalf("parse error without the malformed reason: %v", err)
			}
			return
		}
		signer, err := val.Validate(env)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("validation error without a reason: %v", err)
			}
			return
		}
		sig, _ := decodeB64(env.Signature)
		texts, ok := signed[string(sig)]
		if !ok {
			t.Fatalf("validated (signer %q) with a signature no vector carries", signer)
		}
		mine, err := signedText(env.Fields())
		if err != nil {
			t.Fatal(err)
		}
		bare, _ := signedText(env.Fields(), fieldGilmsgVersion)
		for _, text := range texts {
			if bytes.Equal(text, mine) || bytes.Equal(text, bare) {
				return
			}
		}
		t.Fatalf("validated a body whose signed text no signature covers: %s", mine)
	})
}
