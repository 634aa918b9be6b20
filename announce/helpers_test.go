package announce_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// newPKI makes a throwaway CA with a certificate per host; 1024-bit keys
// keep it quick.
func newPKI(t *testing.T, hosts ...string) *devpki.PKI {
	t.Helper()
	pki, err := devpki.New(t.TempDir(), devpki.Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

// relayConfig is cfg for a relay on free loopback ports.
func relayConfig(cfg *gilmsg.Config) *gilmsg.Config {
	cfg.RelayInbound = []string{"tcp://127.0.0.1:*"}
	cfg.Endpoints = map[string][]string{"relay_outbound": {"tcp://127.0.0.1:*"}}
	return cfg
}

// run forwards through r until the test ends, and checks that it stopped
// because it was told to.
func run(t *testing.T, r *gilmsg.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("relay Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("relay Run did not return")
		}
		if err := r.Close(); err != nil {
			t.Errorf("relay Close = %v", err)
		}
	})
}

// peer is cfg as a peer of relay r: active publishers connect to its
// inbound side, subscribers listen to its outbound side.
func peer(cfg *gilmsg.Config, r *gilmsg.Relay) *gilmsg.Config {
	cfg.RelayInbound = []string{r.InboundEndpoint()}
	cfg.Endpoints = map[string][]string{"relay_outbound": {r.OutboundEndpoint()}}
	return cfg
}

func newBus(t *testing.T, cfg *gilmsg.Config) *gilmsg.Bus {
	t.Helper()
	bus, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

// tail yields what sub receives, valid messages only, until the test ends.
func tail(t *testing.T, sub *gilmsg.Bus) <-chan *gilmsg.Message {
	t.Helper()
	ch := make(chan *gilmsg.Message, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range sub.Tail(ctx, "") {
			if err != nil {
				continue
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch
}

// until publishes with send every 50 ms until a message whose body
// contains mark arrives on msgs, and returns it: the relay's outbound
// side is a plain PUB, which cannot say when a subscriber's subscription
// has reached it.
func until(t *testing.T, msgs <-chan *gilmsg.Message, mark string, send func(ctx context.Context) error) *gilmsg.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := send(ctx); err != nil {
			t.Fatalf("publish: %v", err)
		}
		for wait := true; wait; {
			select {
			case m := <-msgs:
				if strings.Contains(string(m.Body), mark) {
					return m
				}
			case <-tick.C:
				wait = false
			case <-ctx.Done():
				t.Fatalf("no message with %q came through the relay", mark)
			}
		}
	}
}

func shortHostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}
