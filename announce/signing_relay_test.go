package announce_test

import (
	"context"
	"errors"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/announce"
)

// A publisher that cannot sign reaches a subscriber that validates
// through the signing relay, signed as certnames["signing_relay"].
func TestNewSigningRelay(t *testing.T) {
	pki := newPKI(t, "relay01", "cron01")
	rcfg := relayConfig(pki.Config())
	rcfg.Certnames[announce.SigningRelayName] = "relay01"
	r, err := announce.NewSigningRelay(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	subCfg := peer(pki.Config(), r)
	if !subCfg.ValidateSignatures {
		t.Fatal("the subscriber must validate for this test to mean anything")
	}
	msgs := tail(t, newBus(t, subCfg))

	cfg := peer(pki.Config(), r)
	cfg.Name, cfg.Active, cfg.SignMessages = "cron01", true, false
	pub := newBus(t, cfg)
	m := until(t, msgs, "nightly", func(ctx context.Context) error {
		_, err := pub.Publish(ctx, "job.done", map[string]string{"job": "nightly"}, gilmsg.WithTopicModname("cron"))
		return err
	})
	if m.Signer != "relay01" || m.Topic != "org.example.dev.cron.job.done" {
		t.Errorf("topic %q signed by %q; want org.example.dev.cron.job.done by relay01", m.Topic, m.Signer)
	}
	if r.Stats().Signed == 0 {
		t.Errorf("Stats() = %+v: nothing counted as signed", r.Stats())
	}
}

func TestNewSigningRelayErrors(t *testing.T) {
	pki := newPKI(t, "relay01")
	for _, tc := range []struct {
		name     string
		certname map[string]string
		want     error
	}{
		{"no certname", nil, gilmsg.ErrCannotSign},
		{"no such certificate", map[string]string{announce.SigningRelayName: "nobody"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := relayConfig(pki.Config())
			cfg.Certnames = tc.certname
			r, err := announce.NewSigningRelay(cfg)
			if err == nil {
				r.Close()
				t.Fatal("NewSigningRelay = nil error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("NewSigningRelay = %v, want %v", err, tc.want)
			}
			var ce *gilmsg.ConfigError
			if tc.want != nil && (!errors.As(err, &ce) || ce.Key != "certnames") {
				t.Errorf("NewSigningRelay = %v, want a ConfigError on certnames", err)
			}
		})
	}
	if _, err := announce.NewSigningRelay(nil); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("NewSigningRelay(nil) = %v, want ErrConfig", err)
	}
}
