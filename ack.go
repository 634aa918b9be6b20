package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"
)

// AckTimeoutError says which recipients of a reliable publish did not ACK
// in time, how long the others took, and which ACKs for the message came
// but did not count. It matches [ErrAckTimeout] and the context error that
// ended the wait: context.DeadlineExceeded (the ACK timeout, or ctx's own
// deadline when that came first), or context.Canceled when ctx was
// cancelled, which does not match ErrAckTimeout.
type AckTimeoutError struct {
	Topic   string
	MsgID   string
	Timeout time.Duration // the ACK timeout that applied
	Waited  time.Duration // how long the publish waited for ACKs
	Acked   []Ack         // recipients that ACKed, with their delays
	Missing []string      // recipients that did not
	// Rejected lists ACKs for this message that did not count (at most
	// 16): a signer not among the recipients (often a CN written as an
	// endpoint name: billing01 for billing01.example.org), or one that
	// failed validation.
	Rejected []RejectedAck
	Err      error // context.DeadlineExceeded or context.Canceled
	// ctxEnded: Err came from the caller's ctx, not the ACK timeout.
	ctxEnded bool
}

// RejectedAck is an ACK that did not count for a publish.
type RejectedAck struct {
	Signer string // the CN that signed it; "" when its signature failed
	Reason string // "not a recipient", or "invalid: <reason>" ([Reason])
}

func (r RejectedAck) String() string {
	switch {
	case r.Reason == ackRejectNotRecipient:
		return r.Signer + " ACKed but is not a recipient"
	case r.Signer == "":
		return "an ACK was refused (" + r.Reason + ")"
	}
	return "an ACK from " + r.Signer + " was refused (" + r.Reason + ")"
}

// maxRejectedKept bounds AckTimeoutError.Rejected: a peer flooding ACKs
// must not grow a publish's memory.
const maxRejectedKept = 16

func (e *AckTimeoutError) Error() string {
	var b strings.Builder
	missing := strings.Join(e.Missing, ", ")
	waited := e.Waited.Round(time.Millisecond)
	switch {
	case e.MsgID == "":
		// ctx ended before the message was made and sent.
		fmt.Fprintf(&b, "gilmsg: reliable publish on %s not sent: %v after %v", e.Topic, e.Err, waited)
	case errors.Is(e.Err, context.Canceled):
		fmt.Fprintf(&b, "gilmsg: reliable publish of %s on %s cancelled after %v, no ACK from %s", e.MsgID, e.Topic, waited, missing)
	case e.ctxEnded:
		fmt.Fprintf(&b, "gilmsg: no ACK from %s for %s on %s: the context's deadline came after %v, before the ACK timeout (%v)",
			missing, e.MsgID, e.Topic, waited, e.Timeout)
	default:
		fmt.Fprintf(&b, "gilmsg: no ACK from %s for %s on %s within %v", missing, e.MsgID, e.Topic, e.Timeout)
	}
	if len(e.Acked) > 0 {
		b.WriteString(" (ACKed:")
		for _, a := range e.Acked {
			fmt.Fprintf(&b, " %s in %v", a.Recipient, a.Delay.Round(10*time.Microsecond))
		}
		b.WriteString(")")
	}
	for _, r := range e.Rejected {
		b.WriteString("; ")
		b.WriteString(r.String())
	}
	return b.String()
}

func (e *AckTimeoutError) Unwrap() []error {
	if errors.Is(e.Err, context.Canceled) {
		return []error{e.Err}
	}
	return []error{ErrAckTimeout, e.Err}
}

// Reasons an ACK did not count, as kept in [Stats].AcksRejected.
const (
	ackRejectMalformed    = "malformed"
	ackRejectUnknownID    = "unknown msg_id" // stray, late, or for another process
	ackRejectNotRecipient = "not a recipient"
	ackRejectDuplicate    = "duplicate"
	ackRejectTopic        = "wrong topic"
)

// publishReliable is Publish with recipients (WIRE.md §6): listen first,
// then send, and wait; send again only for a recipient that is late, when
// the copy may now reach it ([Bus.awaitAcks]).
func (b *Bus) publishReliable(ctx context.Context, topic string, msg any, po *pubOptions) (*Receipt, error) {
	recipients := uniq(po.recipients)
	start := time.Now()
	// Listen before sending: the listener must be connected wherever the
	// recipients can answer from.
	l, err := b.ackListener(ctx, recipients)
	if err != nil {
		return nil, b.beforeAckWait(ctx, topic, po, recipients, start, err)
	}
	// ACKs are judged against the CA and CRL: if they cannot be loaded,
	// say which and why now, rather than time out on ACKs that came.
	if err := b.validator.CheckTrust(ctx); err != nil {
		return nil, b.beforeAckWait(ctx, topic, po, recipients, start, err)
	}
	// Before the ACK clock starts, as Python gilmsg sleeps before it.
	if err := b.warmUp(ctx, ""); err != nil {
		return nil, b.beforeAckWait(ctx, topic, po, recipients, start, err)
	}
	out, err := b.prepare(ctx, topic, msg, po, prepFlags{gilmsg: true, sign: true})
	if err != nil {
		return nil, err
	}
	timeout := po.ackTimeout
	if timeout <= 0 {
		timeout = b.cfg.AckTimeoutDuration()
	}
	sctx, scancel := context.WithTimeout(ctx, timeout+time.Duration(b.cfg.ZMQSendWait)*time.Millisecond)
	defer scancel()

	p := l.register(out.msgID, recipients)
	defer l.unregister(out.msgID)
	b.stats.reliable.Add(1)
	subs := b.pub.subs
	joins := subs.Joins() // before the send: a later join may have missed it
	// An active publisher waits, within the ACK timeout, for a relay
	// that is restarting. The ACK clock starts once the message has left
	// the socket: a full subscriber, stuck and nothing to do with the
	// recipients, holds it there up to zmq_send_wait (2 s, the default
	// ACK timeout), which failed the publish while its ACKs were on
	// their way; so the send may take that much longer.
	out.sent = make(chan struct{})
	err = b.sendWithin(sctx, out, 0)
	if err == nil {
		select {
		case <-out.sent:
		case <-sctx.Done():
			err = sctx.Err()
		case <-b.closed:
			err = ErrClosed
		}
	}
	if err != nil {
		b.stats.timedOut.Add(1)
		b.opts.hooks.ackTimedOut()
		if b.isClosed() {
			return nil, ErrClosed
		}
		if sctx.Err() != nil {
			return nil, l.timeoutError(ctx, p, out, timeout)
		}
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	err = b.awaitAcks(wctx, l, p, out, joins)
	acks := l.acks(p)
	b.observeAcks(acks)
	switch {
	case err == nil:
		b.stats.acked.Add(1)
		return &Receipt{Topic: out.topic, MsgID: out.msgID, SeqID: out.seqID, Acks: acks}, nil
	case errors.Is(err, ErrClosed):
		return nil, ErrClosed
	}
	b.stats.timedOut.Add(1)
	b.opts.hooks.ackTimedOut()
	if b.isClosed() {
		return nil, ErrClosed
	}
	return nil, l.timeoutError(ctx, p, out, timeout)
}

// beforeAckWait is err, or, when it is ctx's end before the message was
// sent, an AckTimeoutError that says so and how long the publish waited.
func (b *Bus) beforeAckWait(ctx context.Context, topic string, po *pubOptions, recipients []string, start time.Time, err error) error {
	if ctx.Err() == nil || b.isClosed() || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	if !po.exactTopic {
		topic = b.fullTopic(topic, po.modname)
	}
	return &AckTimeoutError{Topic: topic, Waited: time.Since(start), Missing: recipients, Err: ctx.Err(), ctxEnded: true}
}

// fallbackResend is how long a reliable publish waits before its first
// blind resend: the resend option's minimum, else zmq_reconnect_ivl_max
// (a subscriber that joined a relay late has reconnected by then), and
// never less than ten recent ACK delays, so a loaded but healthy
// recipient is not sent a copy it will process twice.
func (b *Bus) fallbackResend() time.Duration {
	d := b.opts.resendMin
	if d <= 0 {
		d = max(time.Duration(b.cfg.ZMQReconnectIvlMax)*time.Millisecond,
			time.Duration(b.cfg.ZMQReconnectIvl)*time.Millisecond, minFallbackResend)
	}
	return min(max(d, 10*time.Duration(b.ackRTT.Load())), b.opts.resendMax)
}

// minFallbackResend bounds the blind resend from below when the reconnect
// intervals are set very short.
const minFallbackResend = 250 * time.Millisecond

func uniq(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// sendAck publishes, signed, the ACK of a gilmsg message (WIRE.md §6), and
// returns it. Messages without gilmsg_version and ACKs are never ACKed:
// it returns nil, nil for them.
func (b *Bus) sendAck(ctx context.Context, env *Envelope) (*outgoing, error) {
	if !needsAck(env) {
		return nil, nil
	}
	return b.publishAck(ctx, env.MsgID, b.closed)
}

// needsAck reports whether env is a gilmsg message, which is ACKed, and
// not an ACK, which is not.
func needsAck(env *Envelope) bool {
	return env.IsGilmsg() && !isAckTopic(env.Topic) && env.MsgID != ""
}

// publishAck signs and sends the ACK of msgID. Its waits (post-init, room
// on the socket) end with ctx or busClosed: the bus's closing for an ACK
// sent for the caller, the socket's for the ACK queue, whose Close sends
// the ACKs due while the bus closes.
func (b *Bus) publishAck(ctx context.Context, msgID string, busClosed <-chan struct{}) (*outgoing, error) {
	if b.pub == nil {
		return nil, errNoAckEndpoint(msgID)
	}
	if h := b.opts.ackHook; h != nil {
		if err := h(msgID); err != nil {
			return nil, err
		}
	}
	if err := b.warmUpUntil(ctx, b.ackTopic, busClosed); err != nil {
		return nil, err
	}
	out, err := b.prepare(ctx, b.ackTopic, map[string]any{"ack_msg_id": msgID}, &pubOptions{}, prepFlags{sign: true})
	if err != nil {
		return nil, err // the caller names the message: Ack's, or an AckError
	}
	out.noWait = true
	if err := b.sendOn(ctx, out, b.cfg.TimeoutDuration(), busClosed); err != nil {
		return nil, err
	}
	b.stats.acksSent.Add(1)
	return out, nil
}

func errNoAckEndpoint(msgID string) error {
	return fmt.Errorf("%w: cannot ACK %s: the bus has no endpoint to publish from (set name with endpoints, or active)", ErrConfig, untrusted.Quote(msgID))
}

// PubFuture is the result of [Bus.PublishAsync], available once Done is
// closed.
type PubFuture struct {
	done    chan struct{}
	receipt *Receipt
	err     error
}

// Done is closed when the publish has finished.
func (f *PubFuture) Done() <-chan struct{} { return f.done }

// Result waits for the publish to finish and returns what Publish would
// have.
func (f *PubFuture) Result() (*Receipt, error) {
	<-f.done
	return f.receipt, f.err
}

// Err waits for the publish to finish and returns its error.
func (f *PubFuture) Err() error {
	<-f.done
	return f.err
}

// PublishAsync starts a Publish (usually a reliable one) and returns at
// once. At most [WithMaxInFlight] may be waiting; past that it fails with
// [ErrTooManyInFlight] rather than queue without bound. ctx bounds the
// publish as it would bound Publish.
func (b *Bus) PublishAsync(ctx context.Context, topic string, msg any, opts ...PublishOption) (*PubFuture, error) {
	if b.isClosed() {
		return nil, ErrClosed
	}
	select {
	case b.inflight <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w (%d)", ErrTooManyInFlight, cap(b.inflight))
	}
	f := &PubFuture{done: make(chan struct{})}
	b.asyncWG.Add(1)
	go func() {
		defer b.asyncWG.Done()
		f.receipt, f.err = b.Publish(ctx, topic, msg, opts...)
		<-b.inflight
		close(f.done)
	}()
	return f, nil
}

// PublishAsyncPending is the number of async publishes not finished yet.
func (b *Bus) PublishAsyncPending() int { return len(b.inflight) }

// WaitAsync waits until every PublishAsync started so far has finished,
// or ctx ends.
func (b *Bus) WaitAsync(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		b.asyncWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
