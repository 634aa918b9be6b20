package gilmsg

// What a publisher stored and did not send before it died reaches running
// subscriptions without waiting for that publisher's next message, which
// may never come: when a publisher's connection drops, the subscription
// asks its replay server for what follows the last seq_id it has, as a
// catch-up does. Nothing is sent on the bus for it, so Python peers see
// nothing twice.

// markDropped is the monitors' hook for any connection that dropped.
func (s *Subscription) markDropped(i int) {
	if s.rec == nil {
		return
	}
	s.noteConn(&s.dropped, i)
}

// catchUpDropped has recovery ask, in its next round, for what follows
// the last seq_id of each publisher whose connection dropped. It runs in
// the reader, which owns recovery.
func (s *Subscription) catchUpDropped() {
	for _, i := range s.takeConns(&s.dropped) {
		src := s.rec.srcs[s.eps[i].name]
		if src != nil && src.last > 0 && !src.open {
			src.open, src.onDrop = true, true
		}
	}
}
