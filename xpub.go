package gilmsg

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// newXPub makes the publishing socket for a publisher that wants to know
// who is subscribed: an XPUB, which subscribers cannot tell from a PUB,
// reporting every subscription and unsubscription, duplicates included
// (ZMQ_XPUB_VERBOSER), so that counts stay per subscriber. Its owner must
// read what arrives on it ([readSubscriptions]) or the queue grows.
//
// Its queue for each subscriber is bounded: by o.SendHWM or else
// high_water_mark, the operator's, past which a subscriber loses
// messages, as fedmsg's do; or when neither is set, by ourCap or else
// [fanoutHWM], a cap of ours that a burst to a slow but live subscriber
// waits for instead of being dropped: the returned Fanout, nil with the
// operator's, sends that way (see [zsock.Fanout]). what names the socket
// in the log.
func newXPub(zctx *zmq.Context, o sockOpts, ourCap int, log *slog.Logger, what string) (*zmq.Socket, *zsock.Fanout, error) {
	operators := o.SendHWM > 0 || o.HWM > 0
	if !operators {
		o.SendHWM = ourCap
		if ourCap <= 0 {
			o.SendHWM = fanoutHWM(o)
		}
	}
	s, err := newSocket(zctx, zmq.XPUB, o)
	if err != nil {
		return nil, nil, err
	}
	if err := s.SetXpubVerboser(1); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("ZMQ_XPUB_VERBOSER: %w", err)
	}
	if operators {
		return s, nil, nil
	}
	fan, err := zsock.NewFanout(s, time.Duration(o.SendWaitMS)*time.Millisecond, log, what)
	if err != nil {
		s.Close()
		return nil, nil, zsockConfigError(err)
	}
	return s, fan, nil
}

// readSubscriptions feeds t with everything queued on the XPUB socket s,
// without blocking. Call it from s's owner whenever s may have input (the
// publisher's goroutine does after each batch it sends, and on a tick).
// Anything that is not a single-frame (un)subscription (an XSUB peer may
// send data upstream) is discarded.
func readSubscriptions(s *zmq.Socket, t *subscriptionTracker) error {
	for {
		msg, err := s.RecvMessageBytes(zmq.DONTWAIT)
		if isEAGAIN(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading subscriptions: %w", err)
		}
		if len(msg) == 1 {
			t.observe(msg[0])
		}
	}
}

// subscriptionTracker counts the subscriptions an XPUB has applied, by
// prefix. When a subscriber disconnects, the XPUB reports its
// unsubscriptions, so counts go down again.
//
// Subscriptions are anonymous: it says how many, not who. A SUB that
// subscribes to the same prefix twice is counted twice but, since libzmq
// sends its unsubscription only for the last one, only decremented once.
//
// observe is called by the XPUB's owner; the other methods are safe from
// any goroutine.
type subscriptionTracker struct {
	mu      sync.Mutex
	subs    map[string]int
	closed  bool
	changed chan struct{} // closed and replaced on every change

	// Every subscription ever observed is numbered (joins is the last
	// number); the latest few are kept with their prefix, so that a
	// reliable publish can ask whether someone subscribed after it sent.
	joins  uint64
	recent [recentJoins]string // prefix of join n at recent[n%recentJoins]
}

// recentJoins is how many subscriptions [subscriptionTracker.JoinedSince]
// can tell apart; older ones count as matching, which costs at most one
// resend too many.
const recentJoins = 64

func newSubscriptionTracker() *subscriptionTracker {
	return &subscriptionTracker{subs: make(map[string]int), changed: make(chan struct{})}
}

// observe applies one frame read from an XPUB: 1 then prefix subscribes, 0
// then prefix unsubscribes. It reports whether the frame was one of those.
func (t *subscriptionTracker) observe(frame []byte) bool {
	if len(frame) == 0 || frame[0] > 1 {
		return false
	}
	prefix := string(frame[1:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if frame[0] == 1 {
		t.subs[prefix]++
		t.joins++
		t.recent[t.joins%recentJoins] = prefix
	} else if t.subs[prefix] > 0 {
		// libzmq also reports cancelling a prefix that was never
		// subscribed; there is nothing to take away then.
		if t.subs[prefix]--; t.subs[prefix] == 0 {
			delete(t.subs, prefix)
		}
	}
	if !t.closed {
		close(t.changed)
		t.changed = make(chan struct{})
	}
	return true
}

// close releases WaitMatching with [ErrClosed]; the XPUB's owner calls it
// when it closes the socket.
func (t *subscriptionTracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.changed)
	}
}

// Count returns the subscriptions to exactly prefix.
func (t *subscriptionTracker) Count(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.subs[prefix]
}

// Matching returns the subscriptions that a message on topic would match:
// those whose prefix is a prefix of topic ("" matches everything).
func (t *subscriptionTracker) Matching(topic string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.matchingLocked(topic)
}

func (t *subscriptionTracker) matchingLocked(topic string) int {
	n := 0
	for prefix, c := range t.subs {
		if strings.HasPrefix(topic, prefix) {
			n += c
		}
	}
	return n
}

// Joins returns the number of the latest subscription observed, for
// [subscriptionTracker.JoinedSince].
func (t *subscriptionTracker) Joins() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.joins
}

// JoinedSince reports whether a subscription that a message on topic would
// match arrived after join number since, and returns the latest number.
// A subscriber that was missing, or has reconnected, subscribes again: a
// message sent before that cannot have reached it.
func (t *subscriptionTracker) JoinedSince(since uint64, topic string) (bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.joins-since > recentJoins {
		return true, t.joins
	}
	for n := since + 1; n <= t.joins; n++ {
		if strings.HasPrefix(topic, t.recent[n%recentJoins]) {
			return true, t.joins
		}
	}
	return false, t.joins
}

// Changed returns a channel closed at the next change.
func (t *subscriptionTracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Subscriptions returns a copy of the counts by prefix.
func (t *subscriptionTracker) Subscriptions() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.subs))
	for p, c := range t.subs {
		out[p] = c
	}
	return out
}

// WaitMatching returns nil once at least n subscriptions match topic, ctx's
// error (wrapped) if it ends first, or [ErrClosed] after close.
func (t *subscriptionTracker) WaitMatching(ctx context.Context, topic string, n int) error {
	for {
		t.mu.Lock()
		have, closed, changed := t.matchingLocked(topic), t.closed, t.changed
		t.mu.Unlock()
		if have >= n {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d subscribers to %q: %w", have, n, topic, ctx.Err())
		}
	}
}
