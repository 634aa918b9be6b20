package gilmsg

import "time"

// Hooks are told of a bus's (or relay's, or gateway's) events as they
// happen, for metrics: cmd/gilmsg feeds Prometheus from them, and this
// package imports no metrics library. [Bus.Stats] has the totals without
// any hook.
//
// Every field is optional. A hook runs on the goroutine of the event, often
// one that owns a socket: it must be fast, must not block, and must be safe
// for concurrent use. Topics are full topics as they came, of unbounded
// variety: group them before using them as metric labels.
type Hooks struct {
	// MessageIn: a message was accepted: validated (unless validation is
	// off), not a duplicate, about to be yielded; or forwarded by a relay
	// or gateway (topic: its first frame).
	MessageIn func(topic string)
	// MessageOut: a message was queued on a publishing socket: a publish,
	// an ACK, a resend, or a message a relay or gateway forwarded.
	MessageOut func(topic string)
	// Rejected: a received message was dropped as invalid.
	Rejected func(reason Reason)

	// AckMatched: an ACK completed a recipient of a waiting reliable
	// publish.
	AckMatched func()
	// AckRejected: an ACK read by the ACK listener did not count.
	AckRejected func(reason string)
	// AckTimedOut: a reliable publish ended without every ACK.
	AckTimedOut func()
	// Resend: a reliable message was sent again.
	Resend func(topic string)

	// ReplayRequest: a replay request was served (ok) or refused (!ok);
	// fed by the replay server.
	ReplayRequest func(ok bool)
	// StoreLag: how long the messages of a batch just stored waited for
	// the store (the oldest one's wait), for a bus with [WithStore].
	StoreLag func(lag time.Duration)
	// GapGivenUp: a subscription stopped asking for a run of seq_ids it
	// missed (see [WithGapMaxAge]).
	GapGivenUp func()
}

// WithHooks reports the bus's events to h. Default: none.
func WithHooks(h *Hooks) Option { return func(o *options) { o.hooks = h } }

// The callers below are nil-safe, so that call sites stay one line.

func (h *Hooks) messageIn(topic string) {
	if h != nil && h.MessageIn != nil {
		h.MessageIn(topic)
	}
}

func (h *Hooks) messageOut(topic string) {
	if h != nil && h.MessageOut != nil {
		h.MessageOut(topic)
	}
}

func (h *Hooks) rejected(r Reason) {
	if h != nil && h.Rejected != nil {
		h.Rejected(r)
	}
}

func (h *Hooks) ackMatched() {
	if h != nil && h.AckMatched != nil {
		h.AckMatched()
	}
}

func (h *Hooks) ackRejected(reason string) {
	if h != nil && h.AckRejected != nil {
		h.AckRejected(reason)
	}
}

func (h *Hooks) ackTimedOut() {
	if h != nil && h.AckTimedOut != nil {
		h.AckTimedOut()
	}
}

func (h *Hooks) resend(topic string) {
	if h != nil && h.Resend != nil {
		h.Resend(topic)
	}
}

// ReportReplayRequest calls h.ReplayRequest if h and it are set: the
// replay server's call site.
func (h *Hooks) ReportReplayRequest(ok bool) {
	if h != nil && h.ReplayRequest != nil {
		h.ReplayRequest(ok)
	}
}

// ReportStoreLag calls h.StoreLag if h and it are set: the store's call
// site.
func (h *Hooks) ReportStoreLag(lag time.Duration) {
	if h != nil && h.StoreLag != nil {
		h.StoreLag(lag)
	}
}

// Hooks returns the hooks the bus was made with ([WithHooks]), or nil, for
// code built on a bus (a replay server, a store) to report through.
func (b *Bus) Hooks() *Hooks { return b.opts.hooks }

func (h *Hooks) gapGivenUp() {
	if h != nil && h.GapGivenUp != nil {
		h.GapGivenUp()
	}
}
