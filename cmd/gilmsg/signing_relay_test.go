package main

import (
	"context"
	"strings"
	"testing"

	"github.com/gilmsg/gilmsg-go/announce"
)

func TestSigningRelayCommand(t *testing.T) {
	t.Parallel()
	const relayCN = "relay01"
	pki := devPKI(t, tailPubCN, relayCN)
	in, out := freePort(t), freePort(t)
	rcfg := testConfig(pki)
	rcfg.RelayInbound = []string{in}
	rcfg.Endpoints = map[string][]string{"relay_outbound": {out}}
	rcfg.Certnames[announce.SigningRelayName] = relayCN
	ctx, cancel := context.WithCancel(context.Background())
	_, stderr, done := startCLI(t, ctx, nil, "signing-relay", "--config", writeConfig(t, rcfg))

	// A publisher that cannot sign, and a subscriber that validates.
	pcfg := testConfig(pki)
	pcfg.Active, pcfg.SignMessages, pcfg.Modname = true, false, "test"
	pcfg.RelayInbound = []string{in}
	pcfg.Endpoints = map[string][]string{}
	pub := newBus(t, pcfg)
	scfg := testConfig(pki)
	scfg.Endpoints = map[string][]string{"relay_outbound": {out}}
	sub := newBus(t, scfg)

	m := publishUntilReceived(t, pub, "note", collect(t, sub, "org.example.dev.test"))
	if m.Signer != relayCN {
		t.Errorf("signer %q, want %q", m.Signer, relayCN)
	}
	var msg map[string]string
	if err := m.Decode(&msg); err != nil || msg["text"] != "it's <é>" {
		t.Errorf("payload %v, %v", msg, err)
	}
	cancel()
	res := <-done
	if res.code != exitOK || !strings.Contains(res.stderr, "signed)") {
		t.Errorf("exit %d, stderr %q", res.code, stderr.String())
	}
}
