package gilmsg

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"
)

// A subscription that ACKs on its own (neither WithoutAck nor
// WithManualAck) hands each ACK to a few signer goroutines as it yields
// the message, instead of signing it in Next: an RSA signature is some
// twenty times the rest of a message's handling on the reader's
// goroutine, and many publishers waiting on one recipient were held to
// one core's signing rate. The ACK still goes only once Next has
// returned the message to its reader. With WithManualAck, the
// application hands the ACK over itself, once it has handled the
// message ([Message.AckAsync]), to the same queue. ACKs of different
// messages may leave in any order: the publisher matches them by msg_id.
const (
	// ackQueueLen and ackQueueBytes bound what waits for a signer: msg_ids
	// (the queue holds nothing else), at most ackQueueLen of them or
	// ackQueueBytes of text (plus the one msg_id that crossed the line);
	// Next, or AckAsync, waits for room before adding one. The count
	// keeps every signer busy behind a burst while bounding Close's flush.
	ackQueueLen   = 256
	ackQueueBytes = 1 << 20
	// ackFlushTimeout bounds how long Close waits for the ACKs already
	// due to be signed and sent; those it cuts off are counted in
	// Stats.AckErrors and logged.
	ackFlushTimeout = 2 * time.Second
)

// AckError is an ACK that a subscription's ACK queue could not send,
// after its message was handed over: the first of each subscription is
// returned, with a nil message, by its next [Subscription.Next]; every
// one is counted in [Stats].AckErrors. The publisher of MsgID times out
// waiting for it (or is sent it again by a resend's ACK).
type AckError struct {
	MsgID string // as the peer sent it: untrusted text
	Err   error  // the cause: signing, sending, the bus closing
}

func (e *AckError) Error() string {
	return "gilmsg: cannot ACK " + untrusted.Quote(e.MsgID) + ": " + strings.TrimPrefix(causeText(e.Err), "gilmsg: ")
}

func (e *AckError) Unwrap() error { return e.Err }

// ackQueue signs and sends a subscription's ACKs on up to GOMAXPROCS
// goroutines, started with the first ACK: those Next hands it (auto), or
// those the application hands it with [Message.AckAsync].
type ackQueue struct {
	s    *Subscription
	auto bool // Next queues each ACK itself: neither WithoutAck nor WithManualAck

	// mu orders adding to jobs with close, and the wait for room of
	// several adders (AckAsync may be called from any goroutine).
	mu     sync.Mutex
	jobs   chan string   // msg_ids to ACK; closed by close
	bytes  atomic.Int64  // msg_id bytes queued or being ACKed; changed under mu
	wake   chan struct{} // closed when a signer made room; nil while nobody waits
	closed bool          // jobs is closed: nothing more is added
	// ctx bounds the signers' waits (post-init, room on the socket); close
	// ends it once ackFlushTimeout has passed.
	ctx    context.Context
	cancel context.CancelFunc
	start  sync.Once
	wg     sync.WaitGroup
	waits  atomic.Int64 // times an adder waited for room, for tests

	said   atomic.Bool // the first failure was logged
	hasErr atomic.Bool // err is set: Next looks without the lock
	errMu  sync.Mutex
	err    error // the first failure, for the reader's next Next
	cut    int   // ACKs close gave up on
}

func newAckQueue(s *Subscription, auto bool) *ackQueue {
	q := &ackQueue{s: s, auto: auto, jobs: make(chan string, ackQueueLen)}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// full reports whether an adder must wait. Under mu.
func (q *ackQueue) full() bool {
	return len(q.jobs) == cap(q.jobs) || q.bytes.Load() >= ackQueueBytes
}

// lockRoom returns with mu held once the queue has room or is closed,
// or without it when ctx ends or done (the subscription's closing)
// closes first. Every waiter watches the same wake channel, which a
// signer closes: none is left asleep when room comes.
func (q *ackQueue) lockRoom(ctx context.Context, done <-chan struct{}) error {
	q.mu.Lock()
	if !q.full() || q.closed {
		return nil
	}
	q.waits.Add(1)
	for q.full() && !q.closed {
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		}
		q.mu.Lock()
	}
	return nil
}

// waitRoom blocks the reader of an auto queue while it is full, until a
// signer makes room, ctx ends or the subscription closes (done).
func (q *ackQueue) waitRoom(ctx context.Context, done <-chan struct{}) error {
	if q == nil || !q.auto {
		return nil
	}
	if err := q.lockRoom(ctx, done); err != nil {
		return err
	}
	q.mu.Unlock()
	return nil
}

// due queues env's ACK if the queue is auto and env is a message that is
// ACKed. The reader calls it as Next returns env's message, with nothing
// left that can fail in between: only a message the reader is given is
// ACKed. The signers send it; a failure comes back from a later Next.
func (q *ackQueue) due(env *Envelope) {
	if q != nil && q.auto && needsAck(env) {
		// A decoded msg_id shares the memory of its whole body.
		q.mu.Lock()
		q.add(strings.Clone(env.MsgID))
		q.mu.Unlock()
	}
}

// push queues the ACK of msgID once there is room; it fails only when
// ctx ends or the subscription closes first (done), the ACK unqueued.
func (q *ackQueue) push(ctx context.Context, done <-chan struct{}, msgID string) error {
	if err := q.lockRoom(ctx, done); err != nil {
		return err
	}
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.add(msgID)
	return nil
}

// add queues the ACK of msgID, under mu. The adder waited for room (the
// reader of an auto queue, before it read), so it does not block.
func (q *ackQueue) add(msgID string) {
	if q.closed {
		return // not reached: the reader is out before close
	}
	q.start.Do(func() {
		for range runtime.GOMAXPROCS(0) {
			q.wg.Add(1)
			go q.run()
		}
	})
	q.bytes.Add(int64(len(msgID)))
	q.jobs <- msgID
}

func (q *ackQueue) run() {
	defer q.wg.Done()
	for id := range q.jobs {
		q.ack(id)
		q.mu.Lock()
		q.bytes.Add(-int64(len(id)))
		if q.wake != nil {
			close(q.wake)
			q.wake = nil
		}
		q.mu.Unlock()
	}
}

func (q *ackQueue) ack(id string) {
	s, b := q.s, q.s.bus
	if q.ctx.Err() != nil {
		q.errMu.Lock()
		q.cut++
		q.errMu.Unlock()
		b.stats.ackErrors.Add(1)
		return
	}
	// Not bus.closed: the bus closes its socket only after its
	// subscriptions, so the ACKs due at Close still leave; but once the
	// socket's goroutine is gone (a Bus.Close racing the subscription's
	// own), nothing would make room.
	out, err := b.publishAck(q.ctx, id, b.pub.done)
	if out != nil && s.seen != nil {
		s.seen.setAck(id, out)
	}
	if err != nil {
		q.fail(id, err)
	}
}

// fail counts an ACK that could not be sent, and, for the first, logs it
// and keeps it for the reader's next Next.
func (q *ackQueue) fail(id string, err error) {
	s := q.s
	s.bus.stats.ackErrors.Add(1)
	if !q.said.CompareAndSwap(false, true) {
		return
	}
	// Said once, loudly: a consumer that cannot ACK makes every reliable
	// publish to it time out.
	s.bus.log.Error("gilmsg: cannot ACK", untrusted.Attr("msg_id", id), slog.Any("error", err))
	q.errMu.Lock()
	q.err = &AckError{MsgID: id, Err: err}
	q.errMu.Unlock()
	q.hasErr.Store(true)
	s.interrupt() // a reader waiting for input returns it now
}

// takeErr returns, once, the first ACK failure.
func (q *ackQueue) takeErr() error {
	if q == nil || !q.hasErr.Load() {
		return nil
	}
	q.errMu.Lock()
	defer q.errMu.Unlock()
	err := q.err
	q.err = nil
	q.hasErr.Store(false)
	return err
}

// close sends the ACKs already queued, for up to ackFlushTimeout, and
// stops the signers. The reader must be done; an AckAsync that comes
// after returns ErrClosed.
func (q *ackQueue) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.closed = true
	close(q.jobs)
	if q.wake != nil {
		close(q.wake) // an AckAsync waiting for room returns ErrClosed
		q.wake = nil
	}
	q.mu.Unlock()
	t := time.AfterFunc(ackFlushTimeout, q.cancel)
	q.wg.Wait()
	t.Stop()
	q.cancel()
	if q.cut > 0 {
		q.s.bus.log.Warn("gilmsg: closed before every ACK due was sent",
			slog.Int("unsent", q.cut), slog.Duration("waited", ackFlushTimeout))
	}
}
