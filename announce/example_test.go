package announce_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/announce"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// The examples run a relay on free ports of 127.0.0.1 with a throwaway
// CA (1024-bit keys, quick to make); a real deployment loads its
// configuration with gilmsg.LoadConfig and runs `gilmsg relay`.

// An announcement goes through the relay, signed as
// certnames["announce.<short hostname>"].
func ExamplePublish() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki, relay, cleanup := startRelay(ctx, gilmsg.NewRelay, "relay01", "announce01")
	defer cleanup()

	cfg := peerOf(pki, relay)
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	cfg.Certnames["announce."+host] = "announce01"
	bus, err := gilmsg.New(announce.Config(cfg))
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	m := publishUntilSeen(ctx, peerOf(pki, relay), func(ctx context.Context) error {
		_, err := announce.Publish(ctx, bus, "The mirrors are back", "https://status.example.org")
		return err
	})
	var a announce.Announcement
	if err := m.Decode(&a); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, signed by %s: %q (%s)\n", m.Topic, m.Signer, a.Message, *a.Link)
	// Output:
	// org.example.dev.announce.announcement, signed by announce01: "The mirrors are back" (https://status.example.org)
}

// A publisher that cannot sign (sign_messages false) reaches subscribers
// that validate: the signing relay signs for it.
func ExampleNewSigningRelay() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki, relay, cleanup := startRelay(ctx, announce.NewSigningRelay, "relay01")
	defer cleanup()

	cfg := peerOf(pki, relay)
	cfg.Name, cfg.Active, cfg.SignMessages = "cron01", true, false
	cron, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cron.Close()

	m := publishUntilSeen(ctx, peerOf(pki, relay), func(ctx context.Context) error {
		_, err := cron.Publish(ctx, "job.done", map[string]string{"job": "backup"}, gilmsg.WithTopicModname("cron"))
		return err
	})
	fmt.Printf("%s %v, signed by %s\n", m.Topic, m.Msg(), m.Signer)
	// Output:
	// org.example.dev.cron.job.done map[job:backup], signed by relay01
}

// startRelay runs a relay made by newRelay, with certnames["signing_relay"]
// = "relay01", on free ports, with a CA issuing hosts.
func startRelay(ctx context.Context, newRelay func(*gilmsg.Config, ...gilmsg.RelayOption) (*gilmsg.Relay, error), hosts ...string) (*devpki.PKI, *gilmsg.Relay, func()) {
	dir, err := os.MkdirTemp("", "gilmsg-example-")
	if err != nil {
		log.Fatal(err)
	}
	pki, err := devpki.New(dir, devpki.Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		log.Fatal(err)
	}
	cfg := pki.Config()
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	cfg.Certnames[announce.SigningRelayName] = "relay01"
	relay, err := newRelay(cfg)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	return pki, relay, func() {
		relay.Close()
		<-done
		os.RemoveAll(dir)
	}
}

// peerOf is the configuration of a peer of relay: no name, connected to
// relay_inbound when active, listening to relay_outbound.
func peerOf(pki *devpki.PKI, relay *gilmsg.Relay) *gilmsg.Config {
	cfg := pki.Config()
	cfg.RelayInbound = []string{relay.InboundEndpoint()}
	cfg.Endpoints = map[string][]string{"relay_outbound": {relay.OutboundEndpoint()}}
	return cfg
}

// publishUntilSeen subscribes with cfg and publishes until the first
// message arrives: the relay's outbound side is a plain PUB, which
// cannot say when a subscription has reached it.
func publishUntilSeen(ctx context.Context, cfg *gilmsg.Config, publish func(context.Context) error) *gilmsg.Message {
	watcher, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer watcher.Close()
	sub, err := watcher.Subscribe(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for {
		if err := publish(ctx); err != nil {
			log.Fatal(err)
		}
		wait, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		m, err := sub.Next(wait)
		cancel()
		if err == nil {
			return m
		}
		if ctx.Err() != nil {
			log.Fatal(err)
		}
	}
}
