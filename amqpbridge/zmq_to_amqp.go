package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// ZmqToAMQP carries bus messages to a broker: it subscribes to the bus,
// lets the bus validate, and publishes each message in fedora-messaging
// form ([ToAMQP]) on a durable topic exchange, with publisher confirms.
//
// It is a gilmsg recipient under the bus's certificate: it ACKs a
// reliable message only once the broker has confirmed it, so a publisher
// with the bridge among its recipients knows the message is in the
// broker. While the broker is down nothing is ACKed; the bridge keeps the
// unconfirmed messages (up to Window) and publishes them again, in order,
// once it has reconnected.
type ZmqToAMQP struct {
	bus  *gilmsg.Bus
	cfg  Config
	log  *slog.Logger
	name string

	connected atomic.Bool
	stats     counters
}

// Option configures a bridge.
type Option func(*options)

type options struct{ log *slog.Logger }

// WithLogger logs through l. Default: nothing is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

func buildOptions(opts []Option) options {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// NewZmqToAMQP makes the bridge; [ZmqToAMQP.Run] runs it. The bus must
// be able to publish (a name with endpoints), since it sends the ACKs.
func NewZmqToAMQP(bus *gilmsg.Bus, cfg Config, opts ...Option) (*ZmqToAMQP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus.Endpoint() == "" {
		return nil, fmt.Errorf("%w: the bridge's bus cannot publish its ACKs: give it a name with endpoints", gilmsg.ErrConfig)
	}
	o := buildOptions(opts)
	return &ZmqToAMQP{bus: bus, cfg: cfg, log: o.log, name: "gilmsg zmq-to-amqp " + bus.Config().Name}, nil
}

// Connected reports whether the bridge has a channel to the broker now.
func (z *ZmqToAMQP) Connected() bool { return z.connected.Load() }

// Stats returns the bridge's counters.
func (z *ZmqToAMQP) Stats() Stats { return z.stats.snapshot() }

// outMsg is a bus message on its way to the broker.
type outMsg struct {
	m   *gilmsg.Message
	key string // the routing key: the topic
	pub amqp.Publishing
	dc  *amqp.DeferredConfirmation // nil until published on the current channel
}

// Run subscribes and bridges until ctx ends (then it returns nil) or a
// permanent failure (the bus closed, the broker refuses the exchange).
// Broker outages are not failures: Run reconnects with backoff and
// resumes.
func (z *ZmqToAMQP) Run(ctx context.Context) error {
	sub, err := z.bus.Subscribe(ctx, "", gilmsg.WithManualAck())
	if err != nil {
		return err
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	in := make(chan *outMsg, z.cfg.Window)
	readErr := make(chan error, 1)
	go func() { readErr <- z.read(ctx, sub, in) }()

	var pending []*outMsg // published or to publish, not yet confirmed, in order
	for {
		s, err := connect(ctx, &z.cfg, z.name, z.log, z.declare)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		z.connected.Store(true)
		err = z.serve(ctx, s, in, &pending, readErr)
		z.connected.Store(false)
		s.close()
		if ctx.Err() != nil {
			return nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		z.stats.reconnects.Add(1)
		z.log.Warn("amqpbridge: lost the broker, reconnecting", slog.Int("unconfirmed", len(pending)), slog.Any("error", err))
	}
}

// stopError ends serve when the bus side has ended, with its reason.
type stopError struct{ err error }

func (e *stopError) Error() string { return fmt.Sprintf("bus side ended: %v", e.err) }

func (z *ZmqToAMQP) declare(ch *amqp.Channel) error {
	if err := declareExchange(ch, z.cfg.PublishExchange); err != nil {
		return err
	}
	return ch.Confirm(false)
}

// declareExchange declares a durable topic exchange, or checks that a
// predeclared amq.* one exists (the broker refuses to declare those).
func declareExchange(ch *amqp.Channel, name string) error {
	if strings.HasPrefix(name, "amq.") {
		return ch.ExchangeDeclarePassive(name, amqp.ExchangeTopic, true, false, false, false, nil)
	}
	return ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil)
}

// read turns bus messages into publishings, dropping (and logging) what
// §14 says not to carry. It blocks while Window messages wait.
func (z *ZmqToAMQP) read(ctx context.Context, sub *gilmsg.Subscription, in chan<- *outMsg) error {
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, gilmsg.ErrClosed) {
				return err
			}
			z.log.Warn("amqpbridge: reading the bus", slog.Any("error", err))
			continue
		}
		z.stats.received.Add(1)
		pub, err := ToAMQP(m.Envelope)
		if err == nil && len(pub.Body) > z.cfg.MaxBody {
			// A broker refuses a message over its max_message_size by
			// closing the channel: sent again after each reconnect, it
			// would stop the bridge for good.
			err = &DropError{MsgID: m.MsgID, Reason: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, amqp_max_body is %d", len(pub.Body), z.cfg.MaxBody)}
		}
		if err != nil {
			z.stats.drop(err)
			level := slog.LevelWarn
			if errors.Is(err, ErrLoop) {
				level = slog.LevelDebug // the guard doing its job
			}
			z.log.Log(ctx, level, "amqpbridge: not carried to the broker", slog.String("topic", m.Topic), slog.Any("reason", err))
			continue
		}
		select {
		case in <- &outMsg{m: m, key: m.Topic, pub: pub}:
		case <-ctx.Done():
			return nil
		}
	}
}

// serve publishes on one session until it is lost (the error says why)
// or ctx ends. It first publishes again what the last session left
// unconfirmed.
func (z *ZmqToAMQP) serve(ctx context.Context, s *session, in <-chan *outMsg, pending *[]*outMsg, readErr <-chan error) error {
	gone := s.gone()
	publish := func(o *outMsg) error {
		dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, z.cfg.PublishExchange, o.key, false, false, o.pub)
		if err != nil {
			o.dc = nil
			return err
		}
		o.dc = dc
		return nil
	}
	for _, o := range *pending {
		if err := publish(o); err != nil {
			return err
		}
		z.stats.republished.Add(1)
	}
	for {
		var next <-chan struct{}
		if len(*pending) > 0 {
			next = (*pending)[0].dc.Done()
		}
		inCh := in
		if len(*pending) >= z.cfg.Window {
			inCh = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-gone:
			if e == nil {
				return errors.New("channel closed")
			}
			return e
		case err := <-readErr:
			// The bus side ended: let what is in flight be confirmed
			// and ACKed, then stop.
			z.drainConfirms(ctx, pending)
			z.confirmed(ctx, s, pending, publish)
			return &stopError{err}
		case o := <-inCh:
			if err := publish(o); err != nil {
				if s.ch.IsClosed() {
					*pending = append(*pending, o) // for the next session
					return err
				}
				// The channel refused this message alone: publishing it
				// again would fail again.
				z.stats.drop(err)
				z.log.Error("amqpbridge: cannot publish", slog.String("topic", o.key), slog.String("msg_id", o.pub.MessageId), slog.Any("error", err))
				continue
			}
			*pending = append(*pending, o)
		case <-next:
			if err := z.confirmed(ctx, s, pending, publish); err != nil {
				return err
			}
		}
	}
}

// confirmed handles the confirmations at the head of pending: acked ones
// are ACKed on the bus and leave; a nack on a live channel is published
// again; a nack from a closed channel ends the session.
func (z *ZmqToAMQP) confirmed(ctx context.Context, s *session, pending *[]*outMsg, publish func(*outMsg) error) error {
	for len(*pending) > 0 {
		o := (*pending)[0]
		select {
		case <-o.dc.Done():
		default:
			return nil
		}
		if !o.dc.Acked() {
			if s.ch.IsClosed() {
				return errors.New("channel closed with publishes unconfirmed")
			}
			z.stats.nacked.Add(1)
			z.log.Warn("amqpbridge: broker refused a message, publishing it again", slog.String("msg_id", o.pub.MessageId))
			*pending = append((*pending)[1:], o)
			if err := publish(o); err != nil {
				return err
			}
			continue
		}
		*pending = (*pending)[1:]
		z.stats.forwarded.Add(1)
		// The ACK is signed, so it costs an RSA signature: a reliable
		// publisher waits for it, nobody else does.
		if o.m.IsGilmsg() {
			if err := o.m.Ack(ctx); err != nil {
				z.log.Error("amqpbridge: cannot ACK on the bus", slog.String("msg_id", o.pub.MessageId), slog.Any("error", err))
			}
		}
	}
	return nil
}

// drainConfirms waits for the confirmations already due, so that a clean
// stop ACKs what the broker took.
func (z *ZmqToAMQP) drainConfirms(ctx context.Context, pending *[]*outMsg) {
	for _, o := range *pending {
		if o.dc == nil {
			return
		}
		select {
		case <-o.dc.Done():
		case <-ctx.Done():
			return
		}
	}
}
