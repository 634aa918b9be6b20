package announce_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/announce"
)

func TestPublish(t *testing.T) {
	pki := newPKI(t, "announce01")
	r, err := gilmsg.NewRelay(relayConfig(pki.Config()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	msgs := tail(t, newBus(t, peer(pki.Config(), r)))

	cfg := peer(pki.Config(), r)
	cfg.Certnames["announce."+shortHostname(t)] = "announce01"
	acfg := announce.Config(cfg)
	if acfg.Name != "relay_inbound" || !acfg.Active || acfg.CertPrefix != "announce" {
		t.Errorf("Config: name %q active %v cert_prefix %q", acfg.Name, acfg.Active, acfg.CertPrefix)
	}
	acfg.Certnames["changed"] = "x"
	if _, ok := cfg.Certnames["changed"]; ok || cfg.Name != "" || cfg.Active {
		t.Errorf("Config changed the config it was given: %+v", cfg)
	}
	bus := newBus(t, acfg)

	for _, tc := range []struct {
		name, text, link, mark, want string
	}{
		{"with link", "Fedora Core 4\nhas been declared GOLD", "https://fedoraproject.org/news", "GOLD",
			`{"link":"https://fedoraproject.org/news","message":"Fedora Core 4\nhas been declared GOLD"}`},
		{"without", "it's", "", "it's", `{"link":null,"message":"it's"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var receipt *gilmsg.Receipt
			m := until(t, msgs, tc.mark, func(ctx context.Context) (err error) {
				receipt, err = announce.Publish(ctx, bus, tc.text, tc.link)
				return err
			})
			if m.Topic != "org.example.dev.announce.announcement" || m.Signer != "announce01" {
				t.Errorf("topic %q signed by %q; want org.example.dev.announce.announcement by announce01", m.Topic, m.Signer)
			}
			if receipt.Topic != m.Topic {
				t.Errorf("receipt topic %q, message %q", receipt.Topic, m.Topic)
			}
			var a announce.Announcement
			if err := m.Decode(&a); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(map[string]any{"message": a.Message, "link": a.Link})
			if string(got) != tc.want {
				t.Errorf("msg %s, want %s", got, tc.want)
			}
		})
	}
}

// Nil in is a clear error or the defaults, never a panic.
func TestNilInput(t *testing.T) {
	if _, err := announce.Publish(t.Context(), nil, "text", ""); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("Publish on a nil bus = %v, want ErrConfig", err)
	}
	if c := announce.Config(nil); c == nil || c.Name != "relay_inbound" || c.TopicPrefix != gilmsg.DefaultConfig().TopicPrefix {
		t.Errorf("Config(nil) = %+v, want the defaults as announce uses them", c)
	}
}
