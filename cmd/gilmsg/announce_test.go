package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// relayRig is a relay and a validating subscriber of its outbound side;
// config is the file an active publisher loads.
type relayRig struct {
	pki    *devpki.PKI
	cfg    *gilmsg.Config
	config string
	msgs   <-chan *gilmsg.Message
}

// startRelay runs a relay on free loopback ports until the test ends.
func startRelay(t *testing.T, pki *devpki.PKI) *gilmsg.Relay {
	t.Helper()
	cfg := testConfig(pki)
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	r, err := gilmsg.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
		r.Close()
	})
	return r
}

func newRelayRig(t *testing.T, hosts ...string) *relayRig {
	t.Helper()
	pki := devPKI(t, hosts...)
	r := startRelay(t, pki)
	cfg := testConfig(pki)
	cfg.RelayInbound = []string{r.InboundEndpoint()}
	cfg.Endpoints = map[string][]string{"relay_outbound": {r.OutboundEndpoint()}}
	sub := newBus(t, cfg)
	return &relayRig{pki: pki, cfg: cfg, config: writeConfig(t, cfg), msgs: collect(t, sub, "")}
}

func shortHost(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

func TestAnnounce(t *testing.T) {
	t.Parallel()
	rig := newRelayRig(t, "announce01")
	rig.cfg.Certnames["announce."+shortHost(t)] = "announce01"
	rig.cfg.RoutingPolicy = map[string][]string{"org.example.dev.announce.announcement": {"announce01"}}
	config := writeConfig(t, rig.cfg)

	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"with link", "  Fedora Core 4 \n has been declared GOLD\t\n", []string{"--link", "https://fedoraproject.org/news"},
			`{"link":"https://fedoraproject.org/news","message":"Fedora Core 4\nhas been declared GOLD"}`},
		{"without", "it's\n", nil, `{"link":null,"message":"it's"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, strings.NewReader(tc.stdin), append([]string{"announce", "--config", config}, tc.args...)...)
			if res.code != exitOK {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			m := next(t, rig.msgs)
			if m.Topic != "org.example.dev.announce.announcement" || m.Signer != "announce01" {
				t.Errorf("topic %q signer %q", m.Topic, m.Signer)
			}
			if got := payload(t, m); got != tc.want {
				t.Errorf("msg %s, want %s", got, tc.want)
			}
			if !strings.Contains(res.stdout, m.MsgID) {
				t.Errorf("stdout %q does not name %s", res.stdout, m.MsgID)
			}
		})
	}
}

func TestAnnounceWithoutRelayFails(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, "announce01")
	cfg := testConfig(pki)
	cfg.Timeout = 0.2
	cfg.RelayInbound = []string{freePort(t)}
	cfg.Certnames["announce."+shortHost(t)] = "announce01"
	res := runCLI(t, strings.NewReader("hello\n"), "announce", "--config", writeConfig(t, cfg))
	if res.code != exitFailure || !strings.Contains(res.stderr, "subscribers") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}
