package gilmsg

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gilmsg/gilmsg-go/internal/zbench"
)

func TestRelaySigner(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	pki := testPKI(t)
	cfg := relayTestConfig()
	p := pki.Config()
	cfg.SSLDir, cfg.CACertLocation, cfg.CRLLocation = p.SSLDir, p.CACertLocation, p.CRLLocation
	relaySigner, err := LoadSigner(p.SSLDir, "relay01.example.org")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRelay(cfg, WithRelaySigner(relaySigner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	runRelay(t, r)
	c := newRelayClients(t, zctx, r)
	v := NewValidator(p)

	unsigned := []byte(`{"i": 1, "msg": {"text": "it's"}, "msg_id": "2026-x", "timestamp": 1700000000, "topic": "org.example.dev.shell.note", "username": "someone"}`)
	signer, err := LoadSigner(p.SSLDir, "publisher01.example.org")
	if err != nil {
		t.Fatal(err)
	}
	signed := signBody(t, signer, unsigned)

	for _, m := range [][]string{
		{"org.example.dev.shell.note", string(unsigned)},
		{"org.example.dev.shell.note", string(signed)},
		{"org.example.dev.shell.junk", "not json"},
	} {
		if _, err := c.pub.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}

	got := c.recv(t)
	env, err := ParseEnvelope(got[1])
	if err != nil {
		t.Fatal(err)
	}
	cn, err := v.Validate(env)
	if err != nil || cn != "relay01.example.org" {
		t.Fatalf("the unsigned message, once relayed: signer %q, %v; want relay01.example.org", cn, err)
	}
	var msg map[string]string
	if err := env.Decode(&msg); err != nil || msg["text"] != "it's" {
		t.Errorf("payload after signing = %v, %v", msg, err)
	}

	if got := c.recv(t); !bytes.Equal(got[1], signed) {
		t.Errorf("an already signed message was changed:\n%s\nwant\n%s", got[1], signed)
	}
	if got := c.recv(t); string(got[1]) != "not json" {
		t.Errorf("junk = %q, want it forwarded as is", got[1])
	}
	// The probes ("{}", unsigned) were signed too.
	if st := r.Stats(); st.Signed != uint64(c.probes+1) {
		t.Errorf("Stats().Signed = %d, want %d", st.Signed, c.probes+1)
	}
}

// BenchmarkSigningRelay: each unsigned message costs the relay one RSA
// signature (the shared test PKI's keys).
func BenchmarkSigningRelay(b *testing.B) {
	p := testPKI(b).Config()
	cfg := relayTestConfig()
	signer, err := LoadSigner(p.SSLDir, "relay01.example.org")
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRelay(cfg, WithRelaySigner(signer))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	zbench.RunUntilEnd(b, r.Run)
	pub, sub := benchSockets(b)
	pub.Connect(r.InboundEndpoint())
	sub.Connect(r.OutboundEndpoint())
	body := fmt.Appendf(nil, `{"i": 1, "msg": {"text": %q}, "msg_id": "2026-b", "timestamp": 1700000000, "topic": "org.fedoraproject.prod.bench.message", "username": "u"}`, strings.Repeat("x", 900))
	zbench.PubSub(b, pub, sub, body)
	if st := r.Stats(); st.Signed < uint64(b.N) {
		b.Fatalf("signed %d of %d", st.Signed, b.N)
	}
}
