package gilmsg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// Each example sets up its own bus on 127.0.0.1: a throwaway CA in a
// temporary directory (devpki.New, 1024-bit keys because they are
// quick to make) and endpoints "tcp://127.0.0.1:*", whose real port is
// read back with Bus.Endpoint. A real service loads its configuration with
// gilmsg.LoadConfig instead, as fedmsg does.

// newPKI makes a throwaway CA with a certificate per host, and returns a
// function that removes it.
func newPKI(hosts ...string) (*devpki.PKI, func()) {
	dir, err := os.MkdirTemp("", "gilmsg-example-")
	if err != nil {
		log.Fatal(err)
	}
	pki, err := devpki.New(dir, devpki.Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		os.RemoveAll(dir)
		log.Fatal(err)
	}
	return pki, func() { os.RemoveAll(dir) }
}

// start joins a bus named name (no name: a bus that only subscribes),
// bound on a free port of 127.0.0.1, whose configuration also lists the
// endpoints of peers: the buses it hears ACKs and messages from.
func start(pki *devpki.PKI, name string, peers []*gilmsg.Bus, opts ...gilmsg.Option) *gilmsg.Bus {
	cfg := pki.Config()
	cfg.Name = name
	if name != "" {
		cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
	}
	for _, p := range peers {
		cfg.Endpoints[p.Config().Name] = []string{p.Endpoint()}
	}
	bus, err := gilmsg.New(cfg, opts...)
	if err != nil {
		log.Fatal(err)
	}
	if name != "" {
		// The bus's own entry now names the port it got, as a config
		// with fixed ports would.
		cfg.Endpoints[name] = []string{bus.Endpoint()}
	}
	return bus
}

// The quick start of README.md, kept here so that it compiles (README's
// also imports _ "github.com/gilmsg/gilmsg-go/sqlstore", which this
// package's tests must not). It has no
// Output comment, so go test compiles it without running it: it joins the
// bus the machine's fedmsg configuration describes, and tails forever.
func Example() {
	ctx := context.Background()
	// /etc/fedmsg.d, ~/.fedmsg.d, ./fedmsg.d, FEDMSG_*: name, endpoints,
	// certnames, persistent_store, status_directory, ...
	cfg, err := gilmsg.LoadConfig()
	if err != nil {
		log.Fatal(err)
	}
	// New opens persistent_store itself, with the store package the
	// program imports (_ "github.com/gilmsg/gilmsg-go/sqlstore" for
	// sqlite:// and postgresql://); a typo in a key is logged on
	// slog.Default with the key it probably meant.
	bus, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	// Close sends what is still queued: a program that exits without it
	// loses those messages without a word.
	defer bus.Close()

	// fedmsg.publish: fire and forget. JSON you already have goes as a
	// json.RawMessage, so 50 stays 50 (a float64 would be sent as 50.0).
	order := json.RawMessage(`{"order": 42, "amount": 50}`)
	if _, err := bus.Publish(ctx, "order.created", order); err != nil {
		log.Fatal(err)
	}

	// gilmsg.publish: returns once billing01's certificate (CN
	// billing01.example.org) has ACKed, or says who did not, and why.
	_, err = bus.Publish(ctx, "order.paid", order,
		gilmsg.WithRecipients("billing01.example.org"), gilmsg.WithAckTimeout(2*time.Second))
	var timeout *gilmsg.AckTimeoutError
	if errors.As(err, &timeout) {
		log.Printf("not ACKed by %v: %v", timeout.Missing, err)
	} else if err != nil {
		log.Fatal(err)
	}

	// fedmsg.tail_messages: validated messages; gilmsg ones are ACKed.
	// FullTopic builds the full prefix Publish used; WithCheckpoint keeps the
	// last seq_ids in <status_directory>/orders-tail, so that a restarted
	// tail first gets what it missed (from the publishers' replay servers).
	for m, err := range bus.Tail(ctx, bus.FullTopic("", "order."), gilmsg.WithCheckpoint("orders-tail")) {
		if err != nil {
			log.Print(err) // a *GapError names messages that could not be recovered
			continue
		}
		fmt.Println(m.Topic, m.Signer, m.Msg())
	}
}

func ExampleNew() {
	// A configuration as Python's fedmsg-config prints it; LoadConfig reads
	// the same from /etc/fedmsg.d, ~/.fedmsg.d and ./fedmsg.d.
	cfg, err := gilmsg.ParseConfig([]byte(`{
		"topic_prefix": "org.example",
		"environment": "dev",
		"name": "web01",
		"endpoints": {"web01": ["tcp://127.0.0.1:*"]},
		"validate_signatures": false
	}`), "json")
	if err != nil {
		log.Fatal(err)
	}
	bus, err := gilmsg.New(cfg, gilmsg.WithModname("web"))
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	fmt.Println("bound on 127.0.0.1:", strings.HasPrefix(bus.Endpoint(), "tcp://127.0.0.1:"))
	fmt.Println("ack_timeout:", bus.Config().AckTimeoutDuration())
	// Output:
	// bound on 127.0.0.1: true
	// ack_timeout: 2s
}

func ExampleBus_Publish() {
	pki, cleanup := newPKI("web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	pub := start(pki, "web01", nil, gilmsg.WithModname("web"))
	defer pub.Close()
	// A second bus, with no name, that only listens to web01.
	sub := start(pki, "", []*gilmsg.Bus{pub})
	defer sub.Close()
	s, err := sub.Subscribe(ctx, "org.example.dev.web.")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// ZeroMQ drops what a PUB socket sends before a subscription reaches
	// it; instead of sleeping, wait until it has.
	if err := pub.WaitSubscribers(ctx, "user.login", 1); err != nil {
		log.Fatal(err)
	}
	receipt, err := pub.Publish(ctx, "user.login", map[string]any{"user": "alice"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published on", receipt.Topic)

	m, err := s.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("received", m.Msg(), "signed by", m.Signer, "same id:", m.MsgID == receipt.MsgID)
	// Output:
	// published on org.example.dev.web.user.login
	// received map[user:alice] signed by web01 same id: true
}

func ExampleBus_Tail() {
	pki, cleanup := newPKI("web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	pub := start(pki, "web01", nil, gilmsg.WithModname("web"))
	defer pub.Close()
	sub := start(pki, "", []*gilmsg.Bus{pub})
	defer sub.Close()

	// Tail subscribes when the loop starts, so publish from elsewhere.
	go func() {
		if err := pub.WaitSubscribers(ctx, "page.view", 1); err != nil {
			return
		}
		for _, page := range []string{"/", "/about", "/contact"} {
			if _, err := pub.Publish(ctx, "page.view", map[string]any{"path": page}); err != nil {
				return
			}
		}
	}()

	n := 0
	for m, err := range sub.Tail(ctx, sub.FullTopic("web", "page.")) {
		if err != nil {
			log.Fatal(err)
		}
		var view struct{ Path string }
		if err := m.Decode(&view); err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Topic, view.Path)
		if n++; n == 3 {
			break // closes the subscription
		}
	}
	// Output:
	// org.example.dev.web.page.view /
	// org.example.dev.web.page.view /about
	// org.example.dev.web.page.view /contact
}

func ExampleBus_Publish_reliable() {
	pki, cleanup := newPKI("billing01", "web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The consumer starts first so that the publisher's configuration can
	// name its endpoint: that is where the ACKs come from.
	billing := start(pki, "billing01", nil)
	defer billing.Close()
	web := start(pki, "web01", []*gilmsg.Bus{billing}, gilmsg.WithModname("web"))
	defer web.Close()

	s, err := billing.Subscribe(ctx, "org.example.dev.web.order.", gilmsg.WithEndpoints(web.Endpoint()))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Next ACKs each gilmsg message before returning it.
		m, err := s.Next(ctx)
		if err == nil {
			fmt.Println("billing01 got", m.Msg())
		}
	}()

	receipt, err := web.Publish(ctx, "order.created", map[string]any{"order": 42},
		gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(5*time.Second))
	var timeout *gilmsg.AckTimeoutError
	switch {
	case errors.As(err, &timeout):
		fmt.Println("not ACKed by", timeout.Missing)
	case err != nil:
		log.Fatal(err)
	default:
		<-done
		for _, ack := range receipt.Acks {
			fmt.Println("ACKed by", ack.Recipient)
		}
	}
	// Output:
	// billing01 got map[order:42]
	// ACKed by billing01
}

func ExampleAckTimeoutError() {
	pki, cleanup := newPKI("web01")
	defer cleanup()
	web := start(pki, "web01", nil, gilmsg.WithModname("web"))
	defer web.Close()

	// Nobody named billing01 is running, so no ACK comes.
	_, err := web.Publish(context.Background(), "order.created", map[string]any{"order": 43},
		gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(100*time.Millisecond))
	fmt.Println("is ErrAckTimeout:", errors.Is(err, gilmsg.ErrAckTimeout))
	var timeout *gilmsg.AckTimeoutError
	if errors.As(err, &timeout) {
		fmt.Println("topic:", timeout.Topic)
		fmt.Println("missing:", timeout.Missing, "acked:", len(timeout.Acked))
	}
	// Output:
	// is ErrAckTimeout: true
	// topic: org.example.dev.web.order.created
	// missing: [billing01] acked: 0
}

func ExampleBus_RunConsumers() {
	pki, cleanup := newPKI("billing01", "web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	billing := start(pki, "billing01", nil)
	defer billing.Close()
	web := start(pki, "web01", []*gilmsg.Bus{billing}, gilmsg.WithModname("web"))
	defer web.Close()

	invoices := gilmsg.ConsumerFunc("org.example.dev.web.order.", func(ctx context.Context, m *gilmsg.Message) error {
		fmt.Println("invoicing", m.Msg())
		return nil // an error here withholds the ACK, with WithAckAfterConsume
	})
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- billing.RunConsumers(runCtx, []gilmsg.Consumer{invoices},
			gilmsg.WithAckAfterConsume(),
			gilmsg.WithSubscribeOptions(gilmsg.WithEndpoints(web.Endpoint())))
	}()

	if err := web.WaitSubscribers(ctx, "order.created", 1); err != nil {
		log.Fatal(err)
	}
	receipt, err := web.Publish(ctx, "order.created", map[string]any{"order": 44},
		gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("processed by", receipt.Acks[0].Recipient)
	stop()
	fmt.Println("RunConsumers returned", <-ran)
	// Output:
	// invoicing map[order:44]
	// processed by billing01
	// RunConsumers returned <nil>
}

// ACK after processing: with WithManualAck the subscriber ACKs a message only
// once it has stored it, so a reliable publish succeeds only for the
// orders that were really stored. The refused one is not ACKed, and its
// publisher learns so. An ACK that cannot be sent after AckAsync comes
// back from the subscription's next Next, as an *AckError.
func ExampleWithManualAck() {
	pki, cleanup := newPKI("billing01", "web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	billing := start(pki, "billing01", nil)
	defer billing.Close()
	web := start(pki, "web01", []*gilmsg.Bus{billing}, gilmsg.WithModname("web"))
	defer web.Close()

	sub, err := billing.Subscribe(ctx, "org.example.dev.web.order.", gilmsg.WithManualAck(),
		gilmsg.WithEndpoints(web.Endpoint()))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	handled := make(chan struct{}, 2)
	go func() {
		for m, err := range sub.Messages(ctx) {
			if err != nil {
				continue
			}
			var order struct{ ID, Amount int }
			if err := m.Decode(&order); err != nil || order.Amount <= 0 {
				fmt.Println("refused order", order.ID) // and not ACKed
			} else {
				fmt.Println("stored order", order.ID)
				// Only now that it is stored. AckAsync leaves the signing
				// to the subscription's signers: this loop reads on.
				if err := m.AckAsync(ctx); err != nil {
					log.Print(err)
				}
			}
			handled <- struct{}{}
		}
	}()

	if err := web.WaitSubscribers(ctx, "order.created", 1); err != nil {
		log.Fatal(err)
	}
	for _, order := range []struct {
		id, amount int
		wait       time.Duration
	}{{44, 30, 5 * time.Second}, {45, -1, time.Second}} {
		_, err := web.Publish(ctx, "order.created", map[string]any{"id": order.id, "amount": order.amount},
			gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(order.wait))
		<-handled
		fmt.Printf("order %d: delivered: %v\n", order.id, err == nil)
	}
	// Output:
	// stored order 44
	// order 44: delivered: true
	// refused order 45
	// order 45: delivered: false
}

func ExampleMarshalCanonical() {
	// The text fedmsg signs: sorted keys, no spaces, non-ASCII escaped, and
	// floats written as Python writes them.
	text, err := gilmsg.MarshalCanonical(map[string]any{
		"user":  "José",
		"path":  "/a<b>",
		"ratio": 1.0,
		"big":   1e16,
		"tiny":  0.0001,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(text))
	// Output:
	// {"big":1e+16,"path":"/a<b>","ratio":1.0,"tiny":0.0001,"user":"Jos\u00e9"}
}
