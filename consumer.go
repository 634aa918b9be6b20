package gilmsg

import (
	"context"
	"errors"
	"log/slog"
	"strings"
)

// Consumer is a hub consumer, as Python gilmsg's GilmsgConsumer: it gets
// the messages whose topic starts with Topic. Consume must be safe to call
// from the runner's goroutine while others run; it is never called
// concurrently for one runner.
type Consumer interface {
	Topic() string
	Consume(ctx context.Context, m *Message) error
}

// ConsumerFunc makes a [Consumer] of a function.
func ConsumerFunc(topic string, f func(context.Context, *Message) error) Consumer {
	return funcConsumer{topic: topic, f: f}
}

type funcConsumer struct {
	topic string
	f     func(context.Context, *Message) error
}

func (c funcConsumer) Topic() string                                 { return c.topic }
func (c funcConsumer) Consume(ctx context.Context, m *Message) error { return c.f(ctx, m) }

// RunOption configures [Bus.RunConsumers].
type RunOption func(*runOptions)

type runOptions struct {
	ackAfter bool
	sub      []SubscribeOption
}

// AckAfterConsume ACKs a gilmsg message only once every consumer it was
// given to returned nil: its publisher then learns it was processed, not
// just received. A consumer that fails makes the publisher time out.
// Default: ACK before consuming, as Python gilmsg does.
func AckAfterConsume() RunOption { return func(o *runOptions) { o.ackAfter = true } }

// WithSubscribeOptions passes options to the runner's subscription.
func WithSubscribeOptions(opts ...SubscribeOption) RunOption {
	return func(o *runOptions) { o.sub = append(o.sub, opts...) }
}

// RunConsumers serves every consumer from one subscription (one set of
// sockets) until ctx ends (it returns nil then) or the bus closes
// ([ErrClosed]). A consumer's error is logged and does not stop the others.
func (b *Bus) RunConsumers(ctx context.Context, consumers []Consumer, opts ...RunOption) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	topics := make([]string, len(consumers))
	for i, c := range consumers {
		topics[i] = c.Topic()
	}
	sub, err := b.Subscribe(ctx, commonPrefix(topics), append(o.sub, ManualAck())...)
	if err != nil {
		return err
	}
	defer sub.Close()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrClosed) {
				return err
			}
			b.log.Warn("gilmsg: consumer runner", slog.Any("error", err))
			continue
		}
		b.dispatch(ctx, consumers, m, o.ackAfter)
	}
}

func (b *Bus) dispatch(ctx context.Context, consumers []Consumer, m *Message, ackAfter bool) {
	matched, failed := false, false
	for _, c := range consumers {
		if !strings.HasPrefix(m.Topic, c.Topic()) {
			continue
		}
		if !matched && !ackAfter {
			b.ackOrLog(ctx, m)
		}
		matched = true
		if err := c.Consume(ctx, m); err != nil {
			failed = true
			b.log.Error("gilmsg: consumer failed", slog.String("topic", m.Topic), slog.String("msg_id", m.MsgID), slog.Any("error", err))
		}
	}
	if matched && ackAfter && !failed {
		b.ackOrLog(ctx, m)
	}
}

func (b *Bus) ackOrLog(ctx context.Context, m *Message) {
	if err := m.Ack(ctx); err != nil {
		b.log.Error("gilmsg: cannot ACK", slog.String("msg_id", m.MsgID), slog.Any("error", err))
	}
}

func commonPrefix(s []string) string {
	if len(s) == 0 {
		return ""
	}
	p := s[0]
	for _, t := range s[1:] {
		for !strings.HasPrefix(t, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}
