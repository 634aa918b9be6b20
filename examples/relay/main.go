// Relay: active publishers, which bind nothing, connect to a relay
// (fedmsg-relay) that republishes their messages from one well-known
// endpoint. Signatures stay valid through it, and so do gilmsg's ACKs.
//
//	go run ./examples/relay
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/examples/internal/localbus"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := localbus.New("cron01", "billing01")
	if err != nil {
		return err
	}
	defer local.Close()

	// The relay binds relay_inbound (a SUB socket) and the relay_outbound
	// endpoint (a PUB socket); here on free ports.
	relayCfg := local.Config("")
	relayCfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	relayCfg.Endpoints["relay_outbound"] = []string{"tcp://127.0.0.1:*"}
	relay, err := gilmsg.NewRelay(relayCfg)
	if err != nil {
		return err
	}
	defer relay.Close()
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	fmt.Println("relay: in at", relay.InboundEndpoint(), "out at", relay.OutboundEndpoint())

	// What every peer's configuration says: connect to relay_inbound when
	// active, and listen to relay_outbound.
	peer := func(name string) *gilmsg.Config {
		cfg := local.Config(name)
		cfg.RelayInbound = []string{relay.InboundEndpoint()}
		cfg.Endpoints = map[string][]string{"relay_outbound": {relay.OutboundEndpoint()}}
		return cfg
	}

	// billing01 is active too: its ACKs travel back through the relay.
	billingCfg := peer("billing01")
	billingCfg.Active = true
	billing, err := local.Join(billingCfg)
	if err != nil {
		return err
	}
	// A watcher with no name only listens.
	watcher, err := local.Join(peer(""))
	if err != nil {
		return err
	}
	// cron01 is an active publisher, as fedmsg-logger and cron jobs are;
	// it signs as cron01 (with no name it would sign as
	// certnames["shell.<hostname>"]).
	cronCfg := peer("cron01")
	cronCfg.Active = true
	cron, err := local.Join(cronCfg, gilmsg.WithModname("cron"))
	if err != nil {
		return err
	}

	// It cannot publish, so it cannot ACK either: WithoutAck says it should not
	// try (it would report, once, that it cannot).
	watch, err := watcher.Subscribe(ctx, "org.example.dev.cron.", gilmsg.WithoutAck())
	if err != nil {
		return err
	}
	defer watch.Close()
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	go func() {
		for m, err := range billing.Tail(tailCtx, "org.example.dev.cron.") {
			if err == nil {
				fmt.Printf("billing01 got %s from %s, signed by %s\n", m.Topic, m.Endpoint, m.Signer)
			}
		}
	}()

	// A reliable publish is resent until ACKed, so it needs no head start
	// even though the relay's PUB socket cannot tell when billing01 has
	// subscribed.
	receipt, err := cron.Publish(ctx, "job.done", map[string]any{"job": "backup"},
		gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(2*time.Second))
	var timeout *gilmsg.AckTimeoutError
	if errors.As(err, &timeout) {
		return fmt.Errorf("billing01 did not ACK through the relay: %w", err)
	} else if err != nil {
		return err
	}
	fmt.Printf("cron01: %s ACKed by %s through the relay\n", receipt.Topic, receipt.Acks[0].Recipient)

	// The ACK's round trip also shows the watcher's subscription has
	// reached the relay: a plain publish now gets to it.
	if _, err := cron.Publish(ctx, "job.start", map[string]any{"job": "reindex"}); err != nil {
		return err
	}
	for {
		m, err := watch.Next(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("watcher got %s %v, signed by %s\n", m.Topic, m.Msg(), m.Signer)
		if m.Topic == "org.example.dev.cron.job.start" {
			break
		}
	}

	// The peers leave, then the relay stops.
	stopTail()
	local.Close()
	st := relay.Stats()
	fmt.Printf("relay forwarded %d messages (publishes, resends and ACKs)\n", st.Forwarded)
	relay.Close()
	if err := <-relayDone; !errors.Is(err, gilmsg.ErrClosed) {
		return err
	}
	return nil
}
