package gilmsg

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"
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
	ackAfter    bool
	sub         []SubscribeOption
	statusEvery time.Duration
}

// WithAckAfterConsume ACKs a gilmsg message only once every consumer it was
// given to returned nil: its publisher then learns it was processed, not
// just received. A consumer that fails makes the publisher time out.
// Default: ACK before consuming, as Python gilmsg does.
func WithAckAfterConsume() RunOption { return func(o *runOptions) { o.ackAfter = true } }

// WithSubscribeOptions passes options to the runner's subscription.
func WithSubscribeOptions(opts ...SubscribeOption) RunOption {
	return func(o *runOptions) { o.sub = append(o.sub, opts...) }
}

// RunConsumers serves every consumer from one subscription (one set of
// sockets), which catches up from status_directory when it is set (see
// [WithStatusFile]; the file is named after the bus's name, else
// "gilmsg-hub"), until ctx ends (it returns nil then) or the bus closes
// ([ErrClosed]). A consumer's error is logged and does not stop the others.
// The ACKs are signed and sent off the runner's goroutine, by the
// subscription's ACK queue ([Message.AckAsync]); one that fails is
// counted in [Stats].AckErrors, and the first is logged.
//
// When the config sets moksha.monitoring.socket (in [Config.Extra]), the
// hub's status is published there meanwhile, as moksha's hub does, for
// fedmsg-check and gilmsg check (package hubstatus reads it).
func (b *Bus) RunConsumers(ctx context.Context, consumers []Consumer, opts ...RunOption) error {
	o := runOptions{statusEvery: DefaultStatusInterval}
	for _, opt := range opts {
		opt(&o)
	}
	topics := make([]string, len(consumers))
	for i, c := range consumers {
		topics[i] = c.Topic()
	}
	var st *hubStatus
	endpoint, err := b.cfg.ExtraString(monitoringSocketKey)
	if err != nil {
		return err
	}
	if endpoint != "" {
		st = newHubStatus(consumers, o.statusEvery)
		stop, err := b.startStatus(st, endpoint, o.statusEvery)
		if err != nil {
			return err
		}
		defer stop()
	}
	sub, err := b.Subscribe(ctx, commonPrefix(topics), append(append(b.hubStatusFile(), o.sub...), WithManualAck())...)
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
			if _, ok := errors.AsType[*AckError](err); ok {
				continue // the ACK queue has logged it
			}
			b.log.Warn("gilmsg: consumer runner", slog.Any("error", err))
			continue
		}
		b.dispatch(ctx, consumers, m, o.ackAfter, st)
	}
}

func (b *Bus) dispatch(ctx context.Context, consumers []Consumer, m *Message, ackAfter bool, st *hubStatus) {
	matched, failed := false, false
	for i, c := range consumers {
		if !strings.HasPrefix(m.Topic, c.Topic()) {
			continue
		}
		if !matched && !ackAfter {
			b.ackOrLog(ctx, m, false)
		}
		matched = true
		st.started(i)
		start := time.Now()
		err := c.Consume(ctx, m)
		st.finished(i, time.Since(start), err)
		if err != nil {
			failed = true
			b.log.Error("gilmsg: consumer failed", untrusted.Attr("topic", m.Topic), untrusted.Attr("msg_id", m.MsgID), slog.Any("error", err))
		}
	}
	if matched && ackAfter && !failed {
		b.ackOrLog(ctx, m, true)
	}
	// Handled, for the status file, once the consumers returned: a crash
	// while they run yields the message again after a restart. With
	// WithAckAfterConsume, one that failed is not handled.
	if !ackAfter || !failed {
		m.Done()
	}
}

// ackOrLog hands m's ACK to the subscription's signers (AckAsync): the
// runner reads and dispatches on one goroutine, which would otherwise
// hold every publisher waiting on this hub to one core's signing.
func (b *Bus) ackOrLog(ctx context.Context, m *Message, after bool) {
	var err error
	if after {
		err = m.AckAsync(ctx)
	} else if m.invalid == nil && m.sub != nil && m.Envelope != nil {
		err = m.sub.ackAsync(ctx, m.Envelope) // not AckAsync: the status file waits for the consumers
	}
	if err != nil {
		b.log.Error("gilmsg: cannot ACK", untrusted.Attr("msg_id", m.MsgID), slog.Any("error", err))
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
