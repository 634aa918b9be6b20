package gilmsg

import (
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of a bus's counters; see [Bus.Stats].
type Stats struct {
	Published  uint64 // messages queued on the PUB socket (ACKs and resends included)
	SendErrors uint64 // messages ZeroMQ refused to send
	// SendWaits counts sends that found a subscriber's queue full (at
	// high_water_mark 0) and waited for room, up to zmq_send_wait;
	// SendWaitsRanOut, the waits that ran out, after each of which that
	// message was sent past the full subscribers, which lose it.
	SendWaits, SendWaitsRanOut uint64
	// AcksSentPastFull counts ACKs that found a subscriber's queue full
	// and were sent past it at once: an ACK waits for no subscriber, so
	// that one that stopped reading cannot delay it past its publisher's
	// ACK timeout.
	AcksSentPastFull uint64
	Received         uint64 // messages read by subscriptions
	Invalid          map[Reason]uint64
	Duplicates       uint64 // messages a subscription had already yielded (resends)
	// GapsGivenUp counts the runs of missed seq_ids subscriptions stopped
	// asking for (see WithGapMaxAge); SeqResets, the times a publisher's
	// seq_ids went back and were taken as a new run.
	GapsGivenUp, SeqResets uint64

	AcksSent uint64 // ACKs published by tails and consumers
	// AckErrors counts ACKs a subscription could not sign or send (each
	// subscription logs the first, and its Next returns it), those Close
	// gave up on after its flush bound included.
	AckErrors    uint64
	AcksReceived uint64            // ACK messages read by the ACK listener
	AcksMatched  uint64            // ACKs that completed a recipient of a waiting publish
	AcksRejected map[string]uint64 // ACKs that did not count, by reason

	ReliablePublishes uint64 // reliable publishes started
	Acked             uint64 // reliable publishes every recipient ACKed
	TimedOut          uint64 // reliable publishes that ended without every ACK
	Resends           uint64 // times a reliable message was sent again
}

type stats struct {
	published, sendErrors, received, duplicates    atomic.Uint64
	acksSent, acksReceived, acksMatched, ackErrors atomic.Uint64
	reliable, acked, timedOut, resends             atomic.Uint64
	gapsGivenUp, seqResets                         atomic.Uint64
	invalid                                        keyedCounter[Reason]
	acksRejected                                   keyedCounter[string]
}

// keyedCounter counts by a small set of keys.
type keyedCounter[K comparable] struct {
	mu sync.Mutex
	m  map[K]uint64
}

func (c *keyedCounter[K]) add(k K) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[K]uint64)
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *keyedCounter[K]) snapshot() map[K]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[K]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// Stats returns the bus's counters. It is cheap and safe to call at any
// time, from any goroutine.
func (b *Bus) Stats() Stats {
	s := &b.stats
	out := Stats{
		Published: s.published.Load(), SendErrors: s.sendErrors.Load(), Received: s.received.Load(),
		Invalid: s.invalid.snapshot(), Duplicates: s.duplicates.Load(),
		GapsGivenUp: s.gapsGivenUp.Load(), SeqResets: s.seqResets.Load(),
		AcksSent: s.acksSent.Load(), AcksReceived: s.acksReceived.Load(), AcksMatched: s.acksMatched.Load(),
		AckErrors:         s.ackErrors.Load(),
		AcksRejected:      s.acksRejected.snapshot(),
		ReliablePublishes: s.reliable.Load(), Acked: s.acked.Load(), TimedOut: s.timedOut.Load(), Resends: s.resends.Load(),
	}
	if b.pub != nil {
		out.SendWaits, out.SendWaitsRanOut = b.pub.fan.Waited(), b.pub.fan.TimedOut()
		out.AcksSentPastFull = b.pub.fan.SentPast()
	}
	return out
}
