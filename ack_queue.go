package gilmsg

import (
	"context"
	"fmt"
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
// returned the message to its reader. ACKs of different messages may
// leave in any order: the publisher matches them by msg_id.
const (
	// ackQueueLen and ackQueueBytes bound what waits for a signer: msg_ids
	// (the queue holds nothing else), at most ackQueueLen of them or
	// ackQueueBytes of text (plus the one msg_id that crossed the line);
	// Next waits for room before reading on. The count keeps every
	// signer busy behind a burst while bounding Close's flush.
	ackQueueLen   = 256
	ackQueueBytes = 1 << 20
	// ackFlushTimeout bounds how long Close waits for the ACKs already
	// due to be signed and sent; those it cuts off are counted in
	// Stats.AckErrors and logged.
	ackFlushTimeout = 2 * time.Second
)

// ackQueue signs and sends a subscription's automatic ACKs on up to
// GOMAXPROCS goroutines, started with the first ACK.
type ackQueue struct {
	s     *Subscription
	jobs  chan string   // msg_ids to ACK; closed by close
	bytes atomic.Int64  // msg_id bytes queued or being ACKed
	room  chan struct{} // cap 1: a signer finished one, there may be room
	// ctx bounds the signers' waits (post-init, room on the socket); close
	// ends it once ackFlushTimeout has passed.
	ctx    context.Context
	cancel context.CancelFunc
	start  sync.Once
	wg     sync.WaitGroup
	waits  atomic.Int64 // times the reader waited for room, for tests

	said   atomic.Bool // the first failure was logged
	hasErr atomic.Bool // err is set: Next looks without the lock
	errMu  sync.Mutex
	err    error // the first failure, for the reader's next Next
	cut    int   // ACKs close gave up on
}

func newAckQueue(s *Subscription) *ackQueue {
	q := &ackQueue{s: s, jobs: make(chan string, ackQueueLen), room: make(chan struct{}, 1)}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// full reports whether the reader must wait before reading on.
func (q *ackQueue) full() bool {
	return len(q.jobs) == cap(q.jobs) || q.bytes.Load() >= ackQueueBytes
}

// waitRoom blocks the reader while the queue is full, until a signer
// makes room, ctx ends or the subscription closes (done).
func (q *ackQueue) waitRoom(ctx context.Context, done <-chan struct{}) error {
	if q == nil || !q.full() {
		return nil
	}
	q.waits.Add(1)
	for q.full() {
		select {
		case <-q.room:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		}
	}
	return nil
}

// due queues env's ACK if it is a message that is ACKed. The reader
// calls it as Next returns env's message, with nothing left that can
// fail in between: only a message the reader is given is ACKed. The
// signers send it; a failure comes back from a later Next.
func (q *ackQueue) due(env *Envelope) {
	if q != nil && needsAck(env) {
		// A decoded msg_id shares the memory of its whole body.
		q.add(strings.Clone(env.MsgID))
	}
}

// add queues the ACK of msgID. Only the reader adds, after waitRoom, so
// it never blocks.
func (q *ackQueue) add(msgID string) {
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
		q.bytes.Add(-int64(len(id)))
		select {
		case q.room <- struct{}{}:
		default:
		}
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
	q.err = fmt.Errorf("ACKing %s: %w", untrusted.Quote(id), err)
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
// stops the signers. The reader must be done: nothing is added after.
func (q *ackQueue) close() {
	if q == nil {
		return
	}
	close(q.jobs)
	t := time.AfterFunc(ackFlushTimeout, q.cancel)
	q.wg.Wait()
	t.Stop()
	q.cancel()
	if q.cut > 0 {
		q.s.bus.log.Warn("gilmsg: closed before every ACK due was sent",
			slog.Int("unsent", q.cut), slog.Duration("waited", ackFlushTimeout))
	}
}
