package amqpbridge

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Stats counts what a bridge did since it started.
type Stats struct {
	Received    uint64            // messages read from the source
	Forwarded   uint64            // messages the destination took (confirmed by the broker, or published and ACKed on the bus)
	Dropped     map[string]uint64 // messages not carried, by reason (the DropError's sentinel text)
	Nacked      uint64            // publishes the broker refused, or bus publishes that failed (then sent again)
	Republished uint64            // unconfirmed messages published again after a reconnect
	Duplicates  uint64            // redelivered messages already published on the bus
	Reconnects  uint64            // sessions lost and made again
}

type counters struct {
	received, forwarded, nacked, republished, duplicates, reconnects atomic.Uint64

	mu      sync.Mutex
	dropped map[string]uint64
}

// drop counts err under its reason and returns the reason's count.
func (c *counters) drop(err error) uint64 {
	reason := err.Error()
	var de *DropError
	if errors.As(err, &de) {
		reason = de.Reason.Error()
	}
	c.mu.Lock()
	if c.dropped == nil {
		c.dropped = map[string]uint64{}
	}
	c.dropped[reason]++
	n := c.dropped[reason]
	c.mu.Unlock()
	return n
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	d := make(map[string]uint64, len(c.dropped))
	for k, v := range c.dropped {
		d[k] = v
	}
	c.mu.Unlock()
	return Stats{
		Received: c.received.Load(), Forwarded: c.forwarded.Load(), Dropped: d,
		Nacked: c.nacked.Load(), Republished: c.republished.Load(),
		Duplicates: c.duplicates.Load(), Reconnects: c.reconnects.Load(),
	}
}
