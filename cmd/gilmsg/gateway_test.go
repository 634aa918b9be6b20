package main

import (
	"context"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// publishUntilReceived publishes on pub every few milliseconds until ch
// yields a message, and returns it.
func publishUntilReceived(t *testing.T, pub *gilmsg.Bus, topic string, ch <-chan *gilmsg.Message) *gilmsg.Message {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for {
		if _, err := pub.Publish(context.Background(), topic, map[string]any{"text": "it's <é>"}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		select {
		case m := <-ch:
			return m
		case <-tick.C:
		case <-timeout:
			t.Fatal("nothing came through within 10s")
		}
	}
}

func TestGatewayCommand(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, tailPubCN)
	cfg := testConfig(pki)
	cfg.Name, cfg.Modname = tailPubCN, "test"
	cfg.Endpoints = map[string][]string{tailPubCN: {"tcp://127.0.0.1:*"}}
	pub := newBus(t, cfg)
	gcfg := testConfig(pki)
	gcfg.Endpoints = map[string][]string{tailPubCN: {pub.Endpoint()}}
	gw := freePort(t)

	_, stderr, done := startCLI(t, context.Background(), nil, "gateway", "--config", writeConfig(t, gcfg),
		"--bind", gw, "--metrics-addr", "127.0.0.1:0")
	url := metricsURL(t, stderr)

	// A validating client outside the bus: the signatures survive the
	// gateway.
	ccfg := testConfig(pki)
	ccfg.Endpoints = map[string][]string{}
	client := newBus(t, ccfg)
	m := publishUntilReceived(t, pub, "tick", collect(t, client, "", gilmsg.WithEndpoints(gw)))
	if m.Signer != tailPubCN || m.Topic != "org.example.dev.test.tick" {
		t.Errorf("through the gateway: signer %q, topic %q", m.Signer, m.Topic)
	}
	waitMetric(t, url, `gilmsg_messages_out_total{prefix="org.example.dev.test"}`, 1, nil)
	select {
	case res := <-done:
		t.Fatalf("gateway ended early: %d %q", res.code, res.stderr)
	default:
	}
}
