package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// The demo's cast: certnames, CNs and endpoint names at once.
const (
	demoPublisher = "publisher"
	demoConsumer1 = "consumer01"
	demoConsumer2 = "consumer02"
)

// newDemoCmd builds the command afresh so that tests get their own flags.
func newDemoCmd() *cobra.Command {
	var keyBits int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show a reliable publish and an ACK timeout on a throwaway local bus",
		Long: `demo needs no configuration: it creates a throwaway CA and certificates
in a temporary directory, starts a publisher and two consumers on
127.0.0.1, and walks through gilmsg's reliable publishing:

  1. the publisher sends a signed message to consumer01 and consumer02
     and waits for both ACKs;
  2. consumer02 stops, and the same publish times out, naming consumer02.

It prints what each side sees, then the publisher's counters, removes the
temporary directory, and exits 0 when everything went as described.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := notify(cmd.Context())
			defer stop()
			return withExitCode(runDemo(ctx, cmd.OutOrStdout(), keyBits))
		},
	}
	cmd.Flags().IntVar(&keyBits, "key-bits", 2048, "RSA key size of the throwaway certificates")
	return cmd
}

// demoOut serialises the lines of the demo's goroutines.
type demoOut struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *demoOut) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", args...)
}

// delivery is one message a consumer's application received.
type delivery struct {
	consumer string
	msg      *gilmsg.Message
}

// demoBus is the demo's local bus: a publisher and its consumers, whose
// tails hand what they receive to the demo, which prints it at the right
// step.
type demoBus struct {
	out       *demoOut
	pub       *gilmsg.Bus
	consumers map[string]*demoConsumer
	got       chan delivery
}

// demoConsumer is one consumer bus and the goroutine tailing it.
type demoConsumer struct {
	bus    *gilmsg.Bus
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *demoConsumer) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.bus.Close()
}

func runDemo(ctx context.Context, w io.Writer, keyBits int) error {
	out := &demoOut{w: w}
	dir, err := os.MkdirTemp("", "gilmsg-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out.printf("Setting up a throwaway PKI in %s ...", dir)
	pki, err := devpki.New(dir, devpki.Options{
		Hosts: []string{demoPublisher, demoConsumer1, demoConsumer2}, KeyBits: keyBits})
	if err != nil {
		return err
	}
	d := &demoBus{out: out, consumers: map[string]*demoConsumer{}, got: make(chan delivery, 16)}
	defer d.close()
	if err := d.start(ctx, pki); err != nil {
		return err
	}
	if err := d.allAck(ctx); err != nil {
		return err
	}
	if err := d.oneStopped(ctx); err != nil {
		return err
	}
	s := d.pub.Stats()
	out.printf("")
	out.printf("Publisher's counters: %d reliable publishes, %d ACKed by all, %d timed out, %d resends, %d ACKs matched, %d messages sent in all.",
		s.ReliablePublishes, s.Acked, s.TimedOut, s.Resends, s.AcksMatched, s.Published)
	out.printf("Done: a reliable publish tells you who has the message, and who does not.")
	return nil
}

// start binds the consumers, then the publisher, whose config lists the
// consumers' endpoints (it listens there for ACKs), and has the consumers
// tail it.
func (d *demoBus) start(ctx context.Context, pki *devpki.PKI) error {
	config := func(name string, endpoints map[string][]string) *gilmsg.Config {
		cfg := pki.Config()
		cfg.Name = name
		cfg.Endpoints = map[string][]string{name: {"tcp://127.0.0.1:*"}}
		maps.Copy(cfg.Endpoints, endpoints)
		cfg.ZMQLinger = 100 // nothing left to deliver at exit is worth waiting for
		return cfg
	}
	known := map[string][]string{}
	for _, name := range []string{demoConsumer1, demoConsumer2} {
		b, err := gilmsg.New(config(name, nil), gilmsg.WithModname("demo"))
		if err != nil {
			return err
		}
		d.consumers[name] = &demoConsumer{bus: b}
		known[name] = []string{b.Endpoint()}
	}
	var err error
	if d.pub, err = gilmsg.New(config(demoPublisher, known), gilmsg.WithModname("demo")); err != nil {
		return err
	}
	d.out.printf("Started %s on %s, %s on %s, %s on %s.", demoPublisher, d.pub.Endpoint(),
		demoConsumer1, known[demoConsumer1][0], demoConsumer2, known[demoConsumer2][0])
	for name, c := range d.consumers {
		// Subscribe returns once connected, so nothing sent next is missed
		// for want of a connection.
		sub, err := c.bus.Subscribe(ctx, "", gilmsg.WithEndpoints(d.pub.Endpoint()))
		if err != nil {
			return err
		}
		tctx, cancel := context.WithCancel(ctx)
		c.cancel, c.done = cancel, make(chan struct{})
		go func() {
			defer close(c.done)
			defer sub.Close()
			// The subscription ACKs each gilmsg message before yielding it.
			for m, err := range sub.Messages(tctx) {
				if err != nil {
					d.out.printf("  %s: %v", name, err)
					continue
				}
				select {
				case d.got <- delivery{name, m}:
				case <-tctx.Done():
				}
			}
		}()
	}
	d.out.printf("%s and %s are tailing %s; they ACK what asks for it.", demoConsumer1, demoConsumer2, demoPublisher)
	return nil
}

func (d *demoBus) close() {
	if d.pub != nil {
		d.pub.Close()
	}
	for _, c := range d.consumers {
		c.stop()
	}
}

// allAck is step 1: a reliable publish that both consumers ACK.
func (d *demoBus) allAck(ctx context.Context) error {
	everyone := []string{demoConsumer1, demoConsumer2}
	d.out.printf("")
	d.out.printf("Step 1: reliable publish to %s, waiting up to 2s for both ACKs.", strings.Join(everyone, " and "))
	r, err := d.pub.Publish(ctx, "hello", map[string]any{"step": 1, "text": "hello, reliable world"},
		gilmsg.WithRecipients(everyone...), gilmsg.WithAckTimeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("step 1: %w", err)
	}
	showDeliveries(ctx, d.out, d.got, r.MsgID, everyone)
	for _, a := range r.Acks {
		d.out.printf("  ACK from %s after %v.", a.Recipient, a.Delay.Round(10*time.Microsecond))
	}
	if acked := recipientsOf(r.Acks); !sameNames(acked, everyone) {
		return fmt.Errorf("step 1: ACKed by %v, want %v", acked, everyone)
	}
	d.out.printf("  Delivered and confirmed by both.")
	return nil
}

// oneStopped is step 2: consumer02 stops, and the same publish must time
// out naming exactly it.
func (d *demoBus) oneStopped(ctx context.Context) error {
	d.out.printf("")
	d.out.printf("Step 2: %s stops; the same publish again, waiting up to 1s.", demoConsumer2)
	d.consumers[demoConsumer2].stop()
	delete(d.consumers, demoConsumer2)
	r, err := d.pub.Publish(ctx, "hello", map[string]any{"step": 2, "text": "is anybody there?"},
		gilmsg.WithRecipients(demoConsumer1, demoConsumer2), gilmsg.WithAckTimeout(time.Second))
	var te *gilmsg.AckTimeoutError
	if !errors.As(err, &te) || !errors.Is(err, gilmsg.ErrAckTimeout) {
		return fmt.Errorf("step 2: want an ACK timeout, got receipt %v, error %v", r, err)
	}
	showDeliveries(ctx, d.out, d.got, te.MsgID, []string{demoConsumer1})
	d.out.printf("  Publish failed as it should: %v", te)
	if !slices.Equal(te.Missing, []string{demoConsumer2}) || !slices.Equal(recipientsOf(te.Acked), []string{demoConsumer1}) {
		return fmt.Errorf("step 2: missing %v and ACKed by %v, want missing [%s] and ACKed by [%s]",
			te.Missing, recipientsOf(te.Acked), demoConsumer2, demoConsumer1)
	}
	d.out.printf("  errors.Is(err, gilmsg.ErrAckTimeout) holds; AckTimeoutError.Missing = %v.", te.Missing)
	return nil
}

// showDeliveries prints, in the order of names, the consumers' receipt of
// msgID: a consumer ACKs before its application sees the message, so the
// lines may come a moment after the publish returned.
func showDeliveries(ctx context.Context, out *demoOut, got <-chan delivery, msgID string, names []string) {
	seen := map[string]*gilmsg.Message{}
	timeout := time.After(time.Second)
wait:
	for len(seen) < len(names) {
		select {
		case d := <-got:
			if d.msg.MsgID == msgID {
				seen[d.consumer] = d.msg
			}
		case <-timeout:
			break wait
		case <-ctx.Done():
			return
		}
	}
	for _, n := range names {
		m := seen[n]
		if m == nil {
			out.printf("  %s has not handed it to its application (yet).", n)
			continue
		}
		line, err := humanLine(m)
		if err != nil {
			line = []byte(m.Topic)
		}
		out.printf("  %s received: %s", n, line)
	}
}

func recipientsOf(acks []gilmsg.Ack) []string {
	names := make([]string, len(acks))
	for i, a := range acks {
		names[i] = a.Recipient
	}
	return names
}

func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
