package gilmsg

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// A reliable publish sends its message again only for a recipient that is
// late, and only when something suggests the copy could now reach it.
//
// Python gilmsg consumers process every copy they get, so a copy to a
// healthy recipient that simply has not answered yet is work done twice.
// New subscriptions alone say little: each Python gilmsg publish opens new
// SUB sockets, subscribed to everything, so on a bus with Python
// publishers they arrive all the time. A recipient's own ACK delays say
// when its silence means something.

// A missing ACK is late once lateFactor times the recipient's recent ACK
// delay, or lateFloor, whichever is longer, has passed since the latest
// copy went out. A recipient that has not ACKed anything yet is judged by
// the recent delay of all recipients. The floor is Python gilmsg's own
// default ACK timeout: a Python publisher would have given up by then.
// [WithResendDelays]'s first, when shorter, lowers the floor.
const (
	lateFactor = 4
	lateFloor  = 250 * time.Millisecond
)

// maxAckDelays bounds how many recipients' delays are kept: past it they
// are forgotten and learnt again.
const maxAckDelays = 4096

// ackDelays keeps, per recipient, an exponential moving average of how
// long its ACKs took (1/8 per sample), measured from the first copy.
// Only ACKs that counted, signed by a recipient, are samples, so no other
// peer can move them. Safe from many goroutines.
type ackDelays struct {
	mu  sync.Mutex
	avg map[string]time.Duration
}

func (d *ackDelays) observe(recipient string, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.avg[recipient]
	if !ok {
		if d.avg == nil || len(d.avg) >= maxAckDelays {
			d.avg = make(map[string]time.Duration)
		}
		d.avg[recipient] = delay
		return
	}
	d.avg[recipient] = old - old/8 + delay/8
}

func (d *ackDelays) recent(recipient string) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	avg, ok := d.avg[recipient]
	return avg, ok
}

// observeAcks learns from the ACKs of one publish.
func (b *Bus) observeAcks(acks []Ack) {
	for _, a := range acks {
		b.ackDelays.observe(a.Recipient, a.Delay)
		// All recipients: an exponential moving average, 1/8 per sample.
		old := b.ackRTT.Load()
		b.ackRTT.CompareAndSwap(old, old-old/8+int64(a.Delay)/8)
	}
}

// lateAfter is how long after a copy went out recipient's missing ACK is
// late.
func (b *Bus) lateAfter(recipient string) time.Duration {
	floor := lateFloor
	if b.opts.resendMin > 0 {
		floor = min(floor, b.opts.resendMin)
	}
	avg, ok := b.ackDelays.recent(recipient)
	if !ok {
		avg = time.Duration(b.ackRTT.Load())
	}
	return max(floor, lateFactor*avg)
}

// untilLate is how long until the first recipient of p that has not ACKed
// is late, counted from sent; 0 or less once one is, and ok false when
// none is missing.
func (b *Bus) untilLate(l *ackListener, p *pending, sent time.Time) (wait time.Duration, ok bool) {
	since := time.Since(sent)
	for _, r := range l.missing(p) {
		w := b.lateAfter(r) - since
		if !ok || w < wait {
			wait, ok = w, true
		}
	}
	return wait, ok
}

// awaitAcks waits until every recipient of p has ACKed (nil), wctx ends
// (its error) or the bus closes ([ErrClosed]), sending out again the
// identical signed bytes for late recipients: when a subscription matching
// the topic has reached the publishing socket since the latest copy (a
// recipient that had not subscribed yet, or has reconnected), and as a
// slow fallback for losses the socket cannot see (a relay restarted, a
// subscriber that joined the relay late). joins is the subscription count
// read before the first send.
func (b *Bus) awaitAcks(wctx context.Context, l *ackListener, p *pending, out *outgoing, joins uint64) error {
	subs := b.pub.subs
	sent := time.Now()
	joined := false // a matching subscription arrived after the latest copy
	fallback := b.fallbackResend()
	fallbackTimer := time.NewTimer(fallback)
	defer fallbackTimer.Stop()
	if !b.opts.resend {
		fallbackTimer.Stop()
	}
	lateTimer := time.NewTimer(time.Hour)
	lateTimer.Stop()
	defer lateTimer.Stop()
	resend := func(why string) {
		// Whatever subscribed before this copy gets it.
		joins, joined = subs.Joins(), false
		// Consumers that de-duplicate drop the copy and ACK again. Not
		// while the relay is away: its return is a new subscription.
		if !b.relayConnected() {
			return
		}
		if err := b.send(wctx, out); err == nil {
			sent = time.Now()
			b.stats.resends.Add(1)
			b.opts.hooks.resend(out.topic)
			b.log.Debug("gilmsg: resent", slog.String("msg_id", out.msgID), slog.String("why", why))
		}
	}
	for {
		var changed <-chan struct{}
		if b.opts.resend {
			changed = subs.Changed()
			if j, now := subs.JoinedSince(joins, out.topic); j {
				joins, joined = now, true
			}
			if joined {
				if wait, ok := b.untilLate(l, p, sent); ok && wait > 0 {
					lateTimer.Reset(wait)
				} else if ok {
					resend("new subscriber")
					// Whoever just joined needs its own round trip.
					fallbackTimer.Reset(fallback)
				}
			}
		}
		select {
		case <-p.done:
			return nil
		case <-changed:
		case <-lateTimer.C:
		case <-fallbackTimer.C:
			wait, ok := b.untilLate(l, p, sent)
			if !ok {
				continue // all in: done is closed
			}
			if wait > 0 {
				fallbackTimer.Reset(wait)
				continue
			}
			resend("fallback")
			fallback = min(2*fallback, b.opts.resendMax)
			fallbackTimer.Reset(fallback)
		case <-wctx.Done():
			return wctx.Err()
		case <-b.closed:
			return ErrClosed
		}
	}
}
