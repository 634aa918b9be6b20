package gilmsg

import (
	"testing"
)

// FuzzValidate drives arbitrary frame-2 bodies through ParseEnvelope and
// Validate, seeded with the Python-judged vectors. Nothing may panic; a
// vector's body must get Python's verdict and signer; and nothing may
// validate that a vector's signature does not cover, as Python reads the
// signed text (pythonOracle: no code under test).
func FuzzValidate(f *testing.F) {
	val := NewValidator(vectorsConfig(f, "testdata/pki"))
	oracle := newPythonOracle(f)
	for body := range oracle.verdicts {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := ParseEnvelope(body)
		if err != nil {
			if ReasonOf(err) != ReasonMalformed {
				t.Fatalf("parse error without the malformed reason: %v", err)
			}
			if err := oracle.checkVerdict("", body, false, ""); err != nil {
				t.Fatal(err)
			}
			return
		}
		signer, err := val.Validate(env)
		if err != nil && ReasonOf(err) == "" {
			t.Fatalf("validation error without a reason: %v", err)
		}
		if err := oracle.checkVerdict("", body, err == nil, signer); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			return
		}
		if err := oracle.checkValid(body, signer); err != nil {
			t.Fatal(err)
		}
	})
}
