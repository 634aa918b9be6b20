package gilmsg

import (
	"os"
	"testing"

	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

func TestValidatorReload(t *testing.T) {
	pki, err := newDevPKI(t.TempDir(), devpki.Options{Hosts: []string{"a.example.org"}, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.Config()
	signer, err := LoadSigner(cfg.SSLDir, "a.example.org")
	if err != nil {
		t.Fatal(err)
	}
	env := signedEnvelope(t, signer)
	v := NewValidator(cfg)
	if _, err := v.Validate(env); err != nil {
		t.Fatal(err)
	}
	if err := pki.Revoke("a.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(env); ReasonOf(err) != ReasonRevoked {
		t.Errorf("after Reload: %v, want revoked", err)
	}
	if err := os.Remove(cfg.CACertLocation); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err == nil {
		t.Error("Reload without a CA file succeeded")
	}
	if _, err := v.Validate(env); ReasonOf(err) != ReasonCA {
		t.Errorf("without a CA: %v, want %s", err, ReasonCA)
	}
}

func signedEnvelope(t *testing.T, s *Signer) *Envelope {
	t.Helper()
	body := signBody(t, s, []byte(`{"i": 1, "msg": {}, "msg_id": "2026-r", "timestamp": 1700000000, "topic": "org.example.dev.x.y", "username": "u"}`))
	env, err := ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signBody returns the unsigned message body signed by s.
func signBody(t *testing.T, s *Signer, body []byte) []byte {
	t.Helper()
	env, err := ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	fields := env.Fields()
	if err := s.Sign(fields); err != nil {
		t.Fatal(err)
	}
	signed, err := MarshalCanonical(fields)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}
