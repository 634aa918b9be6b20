package amqpbridge

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// sealJob is one delivery on its way through workOrdered.
type sealJob struct {
	d      amqp.Delivery
	in     *Incoming
	bad    error // FromAMQP refused it
	copy   bool  // redelivered, and published already
	sealed *gilmsg.SealedMessage
	err    error         // Seal failed
	done   chan struct{} // closed once the fields above are set
}

// workOrdered handles deliveries until the channel closes, as work does,
// for a bridge without recipients, in the broker's order: GOMAXPROCS
// goroutines sign deliveries ([gilmsg.Bus.Seal]) while this one sends
// those signed before, in order ([gilmsg.Bus.SendSealed]), and acks them.
// Signing each batch and then sending it, as PublishBatch does, left the
// cores idle while the batch was sent and acked and the broker delivered
// the next, and one idle at the end of each batch.
//
// Each signer takes its share of the deliveries waiting and signs them
// in one call, the sender takes the deliveries in hand in batches: at
// most window/16 each.
//
// Every delivery in hand (at most the window: the broker delivers no
// more unacked) is in one of two channels of the window's size.
func (a *AMQPToZmq) workOrdered(ctx context.Context, deliveries <-chan amqp.Delivery, busGone chan<- error) {
	jobs := make(chan *sealJob, a.cfg.Window)    // to the signers
	ordered := make(chan *sealJob, a.cfg.Window) // to the sender, in the broker's order
	quit := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(quit)
	signers := runtime.GOMAXPROCS(0)
	for range signers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]*sealJob, 0, a.maxBatch())
			for {
				// Its share of the deliveries waiting, signed in one
				// call into libcrypto (Bus.SealEach): the scheduler
				// takes its P back during each call and it must find
				// one after, and closing each done readies the sender
				// on a P about to go into a call; once a batch, not
				// once a delivery.
				batch, ok := takeBatch(jobs, buf[:0:min(cap(buf), 1+len(jobs)/signers)])
				select {
				case <-quit: // nobody will send them
				default:
					a.seal(batch)
				}
				for _, j := range batch {
					close(j.done)
				}
				if !ok {
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(ordered)
		for {
			var d amqp.Delivery
			var ok bool
			select {
			case d, ok = <-deliveries:
			case <-quit:
				return
			}
			if !ok {
				return
			}
			j := &sealJob{d: d, done: make(chan struct{})}
			// Neither send waits: each channel holds the window.
			select {
			case ordered <- j:
			case <-quit:
				return
			}
			select {
			case jobs <- j:
			case <-quit:
				return
			}
		}
	}()
	s := orderedSender{a: a, ctx: ctx}
	batch := make([]*sealJob, 0, a.maxBatch())
	for {
		if len(ordered) == 0 {
			// Nothing more in hand: what is signed goes now, and the
			// broker is told, so that it delivers more.
			if err := s.flush(true); err != nil {
				busGone <- err
				return
			}
		}
		// Signed in the broker's order, the last of a batch is done
		// about when all are: waiting for it wakes this goroutine once
		// for the batch, not once a delivery (it sends far faster than
		// the signers sign), and the batch goes to the bus at once.
		var ok bool
		batch, ok = takeBatch(ordered, batch[:0])
		if n := len(batch); n > 0 {
			select {
			case <-batch[n-1].done:
			default:
				if err := s.flush(false); err != nil {
					busGone <- err
					return
				}
				<-batch[n-1].done
			}
		}
		for _, j := range batch {
			<-j.done
			if err := s.take(j); err != nil {
				busGone <- err
				return
			}
		}
		if !ok {
			if err := s.flush(true); err != nil {
				busGone <- err
			}
			return
		}
	}
}

// maxBatch is how many deliveries a signer or the sender takes at once, at
// most: a sixteenth of the window.
func (a *AMQPToZmq) maxBatch() int { return max(a.cfg.Window/16, 1) }

// takeBatch appends the next delivery in hand to batch, waiting for one,
// and those in hand behind it, up to cap(batch); ok is false once ch is
// closed.
func takeBatch(ch <-chan *sealJob, batch []*sealJob) (_ []*sealJob, ok bool) {
	j, ok := <-ch
	for ok {
		batch = append(batch, j)
		if len(batch) == cap(batch) {
			break
		}
		select {
		case j, ok = <-ch:
		default:
			return batch, true
		}
	}
	return batch, ok
}

// seal is the signers' part of deliveries: what the sender would wait
// for. The deliveries are settled by the sender, in order.
func (a *AMQPToZmq) seal(jobs []*sealJob) {
	now := time.Now()
	msgs := make([]gilmsg.BatchMessage, 0, len(jobs))
	which := make([]*sealJob, 0, len(jobs))
	for _, j := range jobs {
		j.in, j.bad = FromAMQP(&j.d, a.cfg.MaxBody, now)
		if j.bad != nil {
			continue
		}
		if j.d.Redelivered && a.recent.has(j.in.MsgID) {
			j.copy = true
			continue
		}
		msgs = append(msgs, gilmsg.BatchMessage{Topic: j.in.Topic, Msg: j.in.Msg,
			Opts: []gilmsg.PublishOption{gilmsg.WithMsgID(j.in.MsgID), gilmsg.WithUsername(BridgeUsername), gilmsg.WithExactTopic()}})
		which = append(which, j)
	}
	if len(msgs) == 0 {
		return
	}
	sealed, errs := a.bus.SealEach(msgs)
	for i, j := range which {
		j.sealed, j.err = sealed[i], errs[i]
	}
}

// orderedSender is workOrdered's sending end: it sends the signed
// deliveries in order and settles every delivery, in order.
type orderedSender struct {
	a       *AMQPToZmq
	ctx     context.Context
	backoff time.Duration
	ready   []*sealJob     // signed, not sent yet
	unacked *amqp.Delivery // the last one sent, not acked yet
	nUnack  int            // sent since the last ack
}

// take settles j or holds it for the next send; an error means the bus
// is closed.
func (s *orderedSender) take(j *sealJob) error {
	a := s.a
	switch {
	case j.bad != nil, j.copy:
		a.settle(&j.d, j.bad)
	case j.err != nil:
		if drop := refusal(j.in.MsgID, j.err); drop != nil {
			a.settle(&j.d, drop) // delivered again, it would fail again
			return nil
		}
		if err := s.flush(false); err != nil {
			return err
		}
		if errors.Is(j.err, gilmsg.ErrClosed) {
			s.ack()
			return j.err
		}
		a.stats.received.Add(1)
		a.stats.nacked.Add(1)
		a.log.Warn("amqpbridge: bus publish failed; the broker will deliver it again",
			slog.String("topic", j.in.Topic), slog.String("msg_id", j.in.MsgID), slog.Any("error", j.err))
		s.backoff = a.nackAfter(s.ctx, s.backoff, &j.d)
	default:
		a.stats.received.Add(1)
		s.ready = append(s.ready, j)
	}
	return nil
}

// ackEvery is how many sent deliveries the sender acks at once (one
// frame), unless it has nothing more in hand: an ack a delivery costs the
// broker more than the delivery.
func (s *orderedSender) ackEvery() int { return max(s.a.cfg.Window/8, 1) }

// flush sends what is ready, in order, and acks what was sent when
// ackNow is set or enough was sent since the last ack; the broker
// delivers again what could not be sent. An error means the bus is
// closed.
func (s *orderedSender) flush(ackNow bool) error {
	a := s.a
	if len(s.ready) > 0 {
		msgs := make([]*gilmsg.SealedMessage, len(s.ready))
		for i, j := range s.ready {
			msgs[i] = j.sealed
		}
		receipts, err := a.bus.SendSealed(s.ctx, msgs...)
		for i, r := range receipts {
			a.recent.add(r.MsgID)
			a.stats.forwarded.Add(1)
			s.unacked = &s.ready[i].d
			s.nUnack++
		}
		if err != nil {
			s.ack()
			unsent := make([]*amqp.Delivery, 0, len(s.ready)-len(receipts))
			for _, j := range s.ready[len(receipts):] {
				unsent = append(unsent, &j.d)
			}
			s.ready = s.ready[:0]
			a.stats.nacked.Add(uint64(len(unsent)))
			a.log.Warn("amqpbridge: bus publish failed; the broker will deliver it again",
				slog.String("msg_id", unsent[0].MessageId), slog.Int("messages", len(unsent)), slog.Any("error", err))
			if errors.Is(err, gilmsg.ErrClosed) {
				// Unacked deliveries go back to the queue with the session.
				return err
			}
			s.backoff = a.nackAfter(s.ctx, s.backoff, unsent...)
			return nil
		}
		s.ready = s.ready[:0]
		s.backoff = 0
	}
	if ackNow || s.nUnack >= s.ackEvery() {
		s.ack()
	}
	return nil
}

// ack acks every delivery up to the last one sent: one frame. Those
// before it are settled by now (sent, rejected, acked as a copy, or
// nacked), and this goroutine is the channel's only consumer.
func (s *orderedSender) ack() {
	if s.unacked == nil {
		return
	}
	if err := s.unacked.Ack(true); err != nil {
		s.a.log.Warn("amqpbridge: ack", slog.String("msg_id", s.unacked.MessageId), slog.Any("error", err))
	}
	s.unacked, s.nUnack = nil, 0
}
