package gilmsg

import (
	"context"
	"errors"
	"testing"
	"time"
)

// An invalid gilmsg message that reaches an ACKing subscription is never
// ACKed: not by the subscription itself, and not by a caller of
// Message.Ack on a message WithInvalidMessages yielded. The oracle is the
// publisher, which would count a real ACK (the subscriber's signature is
// good): its publish must time out.
func TestInvalidNeverAcked(t *testing.T) {
	const guarded = "org.example.dev.app.guarded"
	for _, tc := range []struct {
		name string
		opts []SubscribeOption
	}{
		{"ACK on yield", nil},
		{"ACK on yield, surfaced", []SubscribeOption{WithInvalidMessages()}},
		{"ManualAck, surfaced, Ack called", []SubscribeOption{WithInvalidMessages(), WithManualAck()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			// Valid everywhere but for the routing policy, which no signer
			// passes on this topic: the ACK topic stays open.
			n.mutate = func(c *Config) { c.RoutingPolicy = map[string][]string{guarded: {"nobody"}} }
			pub := n.start(pubCN, WithModname("app"))
			sub := n.start(c1)

			ctx, cancel := context.WithCancel(context.Background())
			s, err := sub.Subscribe(ctx, "", tc.opts...)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			ackErrs := make(chan error, 64)
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer s.Close()
				for m, err := range s.Messages(ctx) {
					if m == nil {
						t.Errorf("Next: %v", err)
						continue
					}
					select {
					case ackErrs <- m.Ack(ctx):
					default:
					}
				}
			}()
			t.Cleanup(func() { cancel(); <-done })

			if err := pub.WaitSubscribers(ctxT(t), "guarded", 1); err != nil {
				t.Fatal(err)
			}
			_, err = pub.Publish(ctxT(t), "guarded", nil, WithRecipients(c1), WithAckTimeout(time.Second))
			if !errors.Is(err, ErrAckTimeout) {
				t.Errorf("publish of an invalid message: %v, want an ACK timeout", err)
			}
			// Once the subscription has judged it, any ACK it was going to
			// send has been counted.
			waitFor(t, "the message judged", func() bool { return sub.Stats().Invalid[ReasonPolicy] > 0 })
			if got := sub.Stats().AcksSent; got != 0 {
				t.Errorf("%d ACKs sent for an invalid message", got)
			}
			if len(tc.opts) > 0 {
				if err := <-ackErrs; !errors.Is(err, ErrInvalidSignature) {
					t.Errorf("Ack of an invalid message: %v, want its validation error", err)
				}
			}
		})
	}
}
