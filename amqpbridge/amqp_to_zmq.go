package amqpbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// AMQPToZmq carries broker messages to the bus: it consumes from a
// durable queue bound to an exchange and publishes each message as a new
// fedmsg envelope ([FromAMQP]) signed by the bus's certificate, under the
// message_id, with username amqp-bridge.
//
// A delivery is acked only after its bus publish, and, with Recipients,
// only after they ACKed it; otherwise it is nacked and the broker
// delivers it again. A redelivered copy keeps its msg_id, so subscribers
// drop it as a duplicate. Bad deliveries (see [FromAMQP]) are logged and
// rejected without requeue: a queue with a dead-letter exchange keeps
// them.
//
// Without Recipients, deliveries are signed on every core while those
// signed before are published, in the broker's order ([gilmsg.Bus.Seal],
// [gilmsg.Bus.SendSealed]), and acked; with Recipients, Workers of them
// are published at once, each waiting for its ACKs.
type AMQPToZmq struct {
	bus  *gilmsg.Bus
	cfg  Config
	log  *slog.Logger
	name string

	connected atomic.Bool
	stats     counters
	recent    *idRing
}

// NewAMQPToZmq makes the bridge; [AMQPToZmq.Run] runs it. The bus must be
// able to publish and must sign (sign_messages).
func NewAMQPToZmq(bus *gilmsg.Bus, cfg Config, opts ...Option) (*AMQPToZmq, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus.Endpoint() == "" {
		return nil, fmt.Errorf("%w: the bridge's bus cannot publish: give it a name with endpoints", gilmsg.ErrConfig)
	}
	if !bus.Config().SignMessages {
		return nil, &gilmsg.ConfigError{Key: "sign_messages", Err: errors.New("amqp-to-zmq signs what it publishes: turn sign_messages on")}
	}
	o := buildOptions(opts)
	return &AMQPToZmq{bus: bus, cfg: cfg, log: o.log, name: "gilmsg amqp-to-zmq " + bus.Config().Name,
		recent: newIDRing(4096)}, nil
}

// Connected reports whether the bridge is consuming now.
func (a *AMQPToZmq) Connected() bool { return a.connected.Load() }

// Stats returns the bridge's counters.
func (a *AMQPToZmq) Stats() Stats { return a.stats.snapshot() }

func (a *AMQPToZmq) declare(ch *amqp.Channel) error {
	if err := declareExchange(ch, a.cfg.ConsumeExchange); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(a.cfg.Queue, true, false, false, false, nil); err != nil {
		return err
	}
	for _, key := range a.cfg.Bindings {
		if err := ch.QueueBind(a.cfg.Queue, key, a.cfg.ConsumeExchange, false, nil); err != nil {
			return err
		}
	}
	return ch.Qos(a.cfg.Window, 0, false)
}

// Run consumes and bridges until ctx ends (then it returns nil) or a
// permanent failure. Broker outages are not failures: Run reconnects with
// backoff and resumes; what was not acked is delivered again.
func (a *AMQPToZmq) Run(ctx context.Context) error {
	for {
		s, err := connect(ctx, &a.cfg, a.name, a.log, a.declare)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = a.serve(ctx, s)
		a.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		a.stats.reconnects.Add(1)
		a.log.Warn("amqpbridge: lost the broker, reconnecting", slog.Any("error", err))
	}
}

func (a *AMQPToZmq) serve(ctx context.Context, s *session) error {
	deliveries, err := s.ch.ConsumeWithContext(ctx, a.cfg.Queue, a.name, false, false, false, false, nil)
	if err != nil {
		return err
	}
	a.connected.Store(true)
	gone := s.gone()
	busGone := make(chan error, a.cfg.Workers)
	var wg sync.WaitGroup
	work, workers := a.work, a.cfg.Workers
	if len(a.cfg.Recipients) == 0 {
		// One goroutine keeps the broker's order; the bus signs each
		// batch on every core.
		work, workers = a.workOrdered, 1
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(ctx, deliveries, busGone)
		}()
	}
	// Workers end when the deliveries channel closes: with the session,
	// or when ctx ends (ConsumeWithContext cancels the consumer).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	defer func() { s.close(); <-done }()
	select {
	case e := <-gone:
		if e == nil {
			return errors.New("channel closed")
		}
		return e
	case err := <-busGone:
		// Unacked deliveries go back to the queue with the session.
		return &stopError{err}
	case <-done:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("consumer cancelled by the broker")
	}
}

// work handles deliveries until the channel closes, one at a time, for a
// bridge with recipients: each publish waits for their ACKs, and Workers
// of them wait at once. A closed bus is reported on busGone: there is
// nowhere left to publish.
func (a *AMQPToZmq) work(ctx context.Context, deliveries <-chan amqp.Delivery, busGone chan<- error) {
	backoff := time.Duration(0)
	for d := range deliveries {
		err := a.handle(ctx, &d)
		if err == nil {
			backoff = 0
			continue
		}
		if errors.Is(err, gilmsg.ErrClosed) {
			busGone <- err
			return
		}
		backoff = a.nackAfter(ctx, backoff, &d)
	}
}

// nackAfter hands deliveries whose bus publish failed (recipients did not
// ACK, ...) back to the broker after a backoff doubling from 100 ms to
// reconnect_max, so that a recipient that is down does not turn into a
// redelivery storm; it returns the next backoff.
func (a *AMQPToZmq) nackAfter(ctx context.Context, backoff time.Duration, ds ...*amqp.Delivery) time.Duration {
	backoff = min(max(2*backoff, 100*time.Millisecond), a.cfg.ReconnectMax)
	select {
	case <-time.After(backoff):
	case <-ctx.Done():
	}
	for _, d := range ds {
		if err := d.Nack(false, true); err != nil {
			a.log.Warn("amqpbridge: nack", slog.String("msg_id", d.MessageId), slog.Any("error", err))
		}
	}
	return backoff
}

// handle bridges one delivery and settles it, except when the bus
// publish fails: then it returns the error and the caller nacks.
func (a *AMQPToZmq) handle(ctx context.Context, d *amqp.Delivery) error {
	in, ok := a.accept(d)
	if !ok {
		return nil
	}
	opts := []gilmsg.PublishOption{gilmsg.WithMsgID(in.MsgID), gilmsg.WithUsername(BridgeUsername), gilmsg.WithExactTopic()}
	if len(a.cfg.Recipients) > 0 {
		opts = append(opts, gilmsg.WithRecipients(a.cfg.Recipients...))
	}
	if _, err := a.bus.Publish(ctx, in.Topic, in.Msg, opts...); err != nil {
		if drop := refusal(in.MsgID, err); drop != nil {
			a.reject(d, drop)
			return nil
		}
		a.stats.nacked.Add(1)
		a.log.Warn("amqpbridge: bus publish failed; the broker will deliver it again",
			slog.String("topic", in.Topic), slog.String("msg_id", in.MsgID), slog.Any("error", err))
		return err
	}
	a.recent.add(in.MsgID)
	a.stats.forwarded.Add(1)
	return a.ack(d)
}

// accept counts a delivery and turns it into what the bus publishes; a
// delivery that is not to be published (bad, or a copy of one published
// already) is settled here, and ok is false.
func (a *AMQPToZmq) accept(d *amqp.Delivery) (in *Incoming, ok bool) {
	in, err := FromAMQP(d, a.cfg.MaxBody, time.Now())
	if err != nil || d.Redelivered && a.recent.has(in.MsgID) {
		a.settle(d, err)
		return nil, false
	}
	a.stats.received.Add(1)
	return in, true
}

// settle counts and settles a delivery that is not published: bad (err,
// from FromAMQP) is rejected, a copy of one published already acked.
func (a *AMQPToZmq) settle(d *amqp.Delivery, err error) {
	a.stats.received.Add(1)
	if err != nil {
		a.reject(d, err)
		return
	}
	// Published (and ACKed) already; only the broker's ack was lost.
	a.stats.duplicates.Add(1)
	a.ack(d)
}

// reject counts, logs and rejects a delivery that is not carried, for
// the reason err.
func (a *AMQPToZmq) reject(d *amqp.Delivery, err error) {
	n := a.stats.drop(err)
	if errors.Is(err, ErrLoop) {
		// The guard doing its job, on every message an exchange
		// binding routes back: counted, not warned about.
		a.log.Debug("amqpbridge: not carried to the bus", slog.String("routing_key", d.RoutingKey),
			slog.Any("reason", err), slog.Uint64("loops", n))
	} else {
		a.log.Warn("amqpbridge: not carried to the bus", slog.String("routing_key", d.RoutingKey), slog.Any("reason", err))
	}
	if err := d.Reject(false); err != nil {
		a.log.Warn("amqpbridge: reject", slog.Any("error", err))
	}
}

// refusal is the drop of a delivery that the bus refused for what it
// is, not for its state, or nil: delivered again (a nack puts it back at
// the head of the queue), it would be refused again, for ever, each time
// holding the bridge for the nack's backoff. Such a delivery is rejected
// (dead-lettered where the queue has a dead-letter exchange): a body
// under amqp_max_body whose envelope is over the bus's max_message_size,
// or one that FromAMQP took but whose envelope cannot be encoded (nested
// as deep as JSON may be: the envelope adds a level).
func refusal(msgID string, err error) error {
	var reason error
	switch {
	case errors.Is(err, gilmsg.ErrMessageTooLarge):
		reason = ErrTooLarge
	case errors.Is(err, gilmsg.ErrInvalidJSON):
		reason = ErrBadBody
	default:
		return nil
	}
	return &DropError{MsgID: msgID, Reason: reason, Detail: strings.TrimPrefix(err.Error(), "gilmsg: ")}
}

func (a *AMQPToZmq) ack(d *amqp.Delivery) error {
	if err := d.Ack(false); err != nil {
		// The channel is gone; the broker delivers the message again, and
		// the recent set or the subscribers drop the copy.
		a.log.Warn("amqpbridge: ack", slog.String("msg_id", d.MessageId), slog.Any("error", err))
	}
	return nil
}

// idRing remembers the last n ids.
type idRing struct {
	mu   sync.Mutex
	ring []string
	next int
	set  map[string]struct{}
}

func newIDRing(n int) *idRing {
	return &idRing{ring: make([]string, n), set: make(map[string]struct{}, n)}
}

func (r *idRing) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

func (r *idRing) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[id]; ok {
		return
	}
	delete(r.set, r.ring[r.next])
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}
