package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/replaywire"
	"github.com/gilmsg/gilmsg-go/internal/untrusted"

	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// Bounds of what a subscription asks a replay server for in one round,
// and of one answer it reads.
const (
	narrowHole = 64 // runs up to this long are asked by seq_ids, longer ones by seq_id_range
	maxRanges  = 3  // seq_id_range requests a round
	// idsPerAsk bounds a seq_ids list: Python's SqlStore binds each id as
	// one SQL variable, and SQLite before 3.32 refuses more than 999.
	idsPerAsk = 999
)

// answer gathers what one round's requests brought.
type answer struct {
	got  map[int64]*Message
	skip map[int64]bool  // on other topics, or yielded live already: nothing to deliver
	bad  map[int64]error // failed validation
}

func (a *answer) top() int64 {
	top := int64(0)
	for seq := range a.got {
		top = max(top, seq)
	}
	for seq := range a.skip {
		top = max(top, seq)
	}
	for seq := range a.bad {
		top = max(top, seq)
	}
	return top
}

// due runs the rounds that are due, and gives up what is too old; true
// when it asked a server or queued something.
func (r *recovery) due(ctx context.Context) bool {
	if r == nil {
		return false
	}
	now := time.Now()
	ran := false
	for _, name := range sortedKeys(r.srcs) {
		src := r.srcs[name]
		r.expire(src, now)
		if (!src.open && len(src.holes) == 0) || now.Before(src.next) {
			continue
		}
		r.round(ctx, src)
		r.report(src)
		ran = true
		if len(r.queue) > 0 {
			break // yield what came before asking for more
		}
	}
	return ran || len(r.queue) > 0
}

// nextDue is how long until a round is due; false when none is waiting.
func (r *recovery) nextDue() (time.Duration, bool) {
	if r == nil {
		return 0, false
	}
	var at time.Time
	for _, src := range r.srcs {
		if (src.open || len(src.holes) > 0) && (at.IsZero() || src.next.Before(at)) {
			at = src.next
		}
	}
	if at.IsZero() && !r.waiting() {
		return 0, false
	}
	return max(time.Until(at), 0), true
}

func (r *recovery) waiting() bool {
	for _, src := range r.srcs {
		if src.open || len(src.holes) > 0 {
			return true
		}
	}
	return false
}

// expire gives up the holes older than maxAge.
func (r *recovery) expire(src *publisherState, now time.Time) {
	old := 0
	for _, h := range src.holes {
		if now.Sub(h.since) >= r.maxAge {
			old++
		}
	}
	if old == 0 {
		return
	}
	// Move them to the front, keeping each part in order.
	slices.SortStableFunc(src.holes, func(a, b hole) int {
		ao, bo := now.Sub(a.since) >= r.maxAge, now.Sub(b.since) >= r.maxAge
		switch {
		case ao == bo:
			return 0
		case ao:
			return -1
		}
		return 1
	})
	r.giveUp(src, old, fmt.Errorf("asked for %v in vain", r.maxAge))
	slices.SortFunc(src.holes, func(a, b hole) int { return int(min(max(a.from-b.from, -1), 1)) })
}

// recover asks at once for the hole a live message just showed, so that
// what comes is yielded before it; once more after retryMissing for what
// another process may not have committed yet.
func (r *recovery) recover(ctx context.Context, src *publisherState) {
	if src.lastErr != nil && time.Now().Before(src.next) {
		// The server failed a moment ago: do not stall each message on it.
		for i := range src.holes {
			if src.holes[i].tries == 0 {
				src.holes[i].tries, src.holes[i].cause = 1, src.lastErr
			}
		}
		r.report(src)
		return
	}
	r.round(ctx, src)
	if src.lastErr == nil && r.unreported(src) {
		select {
		case <-time.After(retryMissing):
			r.round(ctx, src)
		case <-ctx.Done():
		}
	}
	r.report(src)
}

func (r *recovery) unreported(src *publisherState) bool {
	for _, h := range src.holes {
		if !h.reported {
			return true
		}
	}
	return false
}

// report yields a GapError for each hole asked for in vain that has not
// had one: after two rounds, or one that failed or met an invalid copy.
func (r *recovery) report(src *publisherState) {
	for i := range src.holes {
		h := &src.holes[i]
		if h.reported || h.tries == 0 || (h.tries < 2 && h.cause == nil) {
			continue
		}
		h.reported = true
		r.queue = append(r.queue, queued{err: &GapError{Name: src.name, From: h.from, To: h.to, Err: h.cause}})
	}
}

// round asks src's server once for what src misses: the holes first
// (seq_ids for short runs, seq_id_range for long ones, bounded), then the
// next page of a catch-up. It queues what comes in seq_id order and
// schedules the next round: at once while pages come full, else after a
// doubling delay.
func (r *recovery) round(ctx context.Context, src *publisherState) {
	start := time.Now()
	a := &answer{got: map[int64]*Message{}, skip: map[int64]bool{}, bad: map[int64]error{}}
	full := false
	var err error
	if len(src.holes) > 0 {
		var ids []int64
		var ranges [][]int64
		for _, h := range src.holes {
			if !src.noRange && h.to-h.from >= narrowHole && len(ranges) < maxRanges {
				ranges = append(ranges, []int64{h.from, h.to})
				continue
			}
			for id := h.from; id <= h.to && len(ids) < idsPerAsk; id++ {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			_, err = r.ask(ctx, src, map[string]any{"seq_ids": ids}, a)
		}
		for _, rg := range ranges {
			if err != nil {
				break
			}
			var more bool
			more, err = r.ask(ctx, src, map[string]any{"seq_id_range": rg}, a)
			if isRefusal(err) {
				src.noRange, err = true, nil // Python's: next round by seq_ids
				break
			}
			full = full || more
		}
	}
	if src.open && err == nil {
		err = r.catchUpPage(ctx, src, a, &full)
	}
	progress := r.apply(src, a)
	now := time.Now()
	for i := range src.holes {
		h := &src.holes[i]
		if h.since.After(start) {
			continue // found by this round: not asked yet
		}
		h.tries++
		if err != nil {
			h.cause = err
		}
	}
	for seq, e := range a.bad {
		if i, ok := src.find(seq); ok {
			src.holes[i].cause = e
		}
	}
	switch {
	case err != nil:
		if src.open && !src.onDrop && src.lastErr == nil {
			// The catch-up could not start or go on: said once, retried.
			r.queue = append(r.queue, queued{err: &GapError{Name: src.name, From: src.last + 1, Err: err}})
		}
		src.lastErr = err
		src.tries++
	case progress && (full || src.open):
		src.lastErr, src.tries = nil, 0
		src.next = time.Time{}
		return
	default:
		src.lastErr = nil
		src.tries++
	}
	src.next = now.Add(min(backoffFirst<<min(src.tries-1, 16), backoffMax))
}

// catchUpPage asks for the page after src.last: by seq_id_range, or by
// the next idsPerAsk seq_ids from a server that refuses ranges.
// What it skips below the highest seq_id answered becomes a hole.
func (r *recovery) catchUpPage(ctx context.Context, src *publisherState, a *answer, full *bool) error {
	lo := src.last + 1
	page := map[string]any{"seq_ids": seqRange(lo, idsPerAsk)}
	more, err := false, error(nil)
	if !src.noRange {
		more, err = r.ask(ctx, src, map[string]any{"seq_id_range": []int64{lo, maxSeqID}}, a)
		if isRefusal(err) {
			src.noRange = true
		}
	}
	if src.noRange {
		more, err = r.ask(ctx, src, page, a)
	}
	if err != nil {
		return err
	}
	top := a.top()
	if top < lo {
		src.open = false // nothing more: live traffic takes over
		return nil
	}
	src.last = top
	src.holes = append(src.holes, hole{from: lo, to: top, since: time.Now()})
	if len(src.holes) > maxHoles {
		r.giveUp(src, len(src.holes)-maxHoles, fmt.Errorf("more than %d runs of seq_ids missing", maxHoles))
	}
	// A list may have more after it whatever it brought; a range, when full.
	src.open = src.noRange || more
	*full = *full || src.open
	return nil
}

func seqRange(lo int64, n int) []int64 {
	ids := make([]int64, 0, n)
	for id := lo; len(ids) < n && id <= maxSeqID; id++ {
		ids = append(ids, id)
	}
	return ids
}

// apply takes what a round brought out of src's holes and queues the
// messages in seq_id order; true when anything was missing.
func (r *recovery) apply(src *publisherState, a *answer) bool {
	progress := false
	for seq := range a.skip {
		if src.take(seq) {
			r.status.done(src.name, src.epoch, seq, seq)
			progress = true
		}
	}
	ids := make([]int64, 0, len(a.got))
	for seq := range a.got {
		ids = append(ids, seq)
	}
	slices.Sort(ids)
	s := r.s
	for _, seq := range ids {
		m := a.got[seq]
		if !src.take(seq) {
			continue // not missing: taken in already
		}
		if s.seen != nil && m.MsgID != "" && !s.seen.add(m.MsgID) {
			r.status.done(src.name, src.epoch, seq, seq) // yielded already, under another seq_id
			continue
		}
		src.note(seq, maphash.String(r.seed, m.MsgID))
		r.push(src, m)
		progress = true
	}
	return progress
}

// replayRefusal is an "error: ..." answer other than "no match".
type replayRefusal struct{ text string }

func (e *replayRefusal) Error() string { return "the server refused the request: " + e.text }

func isRefusal(err error) bool {
	var rr *replayRefusal
	return errors.As(err, &rr)
}

// ask sends one replay request for src and sorts the answer into a:
// valid messages on this subscription's topics into got, those on other
// topics or yielded already into skip, invalid ones into bad (logged and
// counted). It returns whether the answer may have more behind it (as
// many messages or bytes as a server sends at once, [replaywire.Full]), and
// fails when the server does not answer in time, refuses, answers garbage
// or too much.
func (r *recovery) ask(ctx context.Context, src *publisherState, req map[string]any, a *answer) (bool, error) {
	ep := r.eps[src.name]
	body, err := MarshalCanonical(req)
	if err != nil {
		return false, err
	}
	s := r.s
	frames, err := replayRequest(ctx, s.bus.zctx, ep, body, r.timeout, s.bus.opts.maxMsgSize, s.closed.Load)
	if err != nil {
		return false, &ReplayError{Name: src.name, Endpoint: ep, Err: err}
	}
	if len(frames) == 1 && strings.HasPrefix(string(frames[0]), replaywire.ErrPrefix) {
		text := string(frames[0])
		if strings.Contains(text, replaywire.NoMatch) {
			return false, nil
		}
		return false, &ReplayError{Name: src.name, Endpoint: ep, Err: &replayRefusal{text: text}}
	}
	var garbage error
	good, size := 0, 0
	for _, f := range frames {
		size += len(f)
		env, err := ParseEnvelope(f)
		if err != nil {
			garbage = err
			continue
		}
		seq, ok := env.SeqID()
		if !ok || seq < 1 || seq > maxSeqID {
			garbage = fmt.Errorf("a replayed message without a usable seq_id")
			continue
		}
		good++
		if a.got[seq] != nil || a.skip[seq] {
			continue
		}
		if !strings.HasPrefix(env.Topic, s.prefix) {
			a.skip[seq] = true
			continue
		}
		m := &Message{Envelope: env, Name: src.name, Endpoint: ep, Body: f, sub: s}
		if s.validate {
			if m.Signer, err = s.bus.validator.Validate(env); err != nil {
				if s.bus.isClosed() {
					return false, ErrClosed // not judged: Close cut a CA or CRL download short
				}
				// Never yielded nor ACKed: said here, and carried by the
				// gap's GapError.
				reason := ReasonOf(err)
				if reason == "" {
					reason = ReasonMalformed
				}
				s.bus.stats.invalid.add(reason)
				s.bus.opts.hooks.rejected(reason)
				s.bus.log.Warn("gilmsg: replayed message failed validation", slog.String("name", src.name),
					slog.Int64("seq_id", seq), untrusted.Attr("msg_id", env.MsgID), slog.Any("error", err))
				a.bad[seq] = err
				continue
			}
		}
		if s.seen != nil && env.MsgID != "" && s.seen.has(env.MsgID) {
			a.skip[seq] = true // yielded already, live
			continue
		}
		a.got[seq] = m
	}
	if garbage != nil && good == 0 {
		return false, &ReplayError{Name: src.name, Endpoint: ep, Err: fmt.Errorf("answered garbage: %w", garbage)}
	}
	if garbage != nil {
		s.bus.log.Warn("gilmsg: replay answer had garbage frames", slog.String("name", src.name), slog.Any("error", garbage))
	}
	return replaywire.Full(len(frames), size), nil
}

// replayRequest does one REQ/REP exchange with a replay server: the REQ
// socket lives for this request only, so a server that never answers
// leaves nothing behind. It reads at most replaywire.MaxReplyMessages frames and
// replaywire.MaxReplyBytes in all; libzmq holds a multipart answer whole before its
// first frame can be read, so that bounds what is copied, not what the
// socket held.
func replayRequest(ctx context.Context, zctx *zmq.Context, endpoint string, req []byte, timeout time.Duration, maxMsg int64, stop func() bool) ([][]byte, error) {
	sock, err := zctx.NewSocket(zmq.REQ)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	sock.SetLinger(time.Duration(zsock.SendLingerMS(zmq.REQ, 0)) * time.Millisecond)
	if maxMsg != 0 {
		sock.SetMaxmsgsize(maxMsg)
	}
	if err := sock.Connect(endpoint); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// Queued on the pipe connect made, whether the server is there or not.
	if _, err := sock.SendBytes(req, zmq.DONTWAIT); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	deadline := time.Now().Add(timeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if stop() {
			return nil, ErrClosed
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w within %v", ErrReplayTimeout, timeout)
		}
		polled, err := poller.Poll(min(left, 50*time.Millisecond))
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return nil, err
		}
		if len(polled) > 0 {
			return readAnswer(sock)
		}
	}
}

// readAnswer reads one multipart answer within the bounds of an answer.
func readAnswer(sock *zmq.Socket) ([][]byte, error) {
	var frames [][]byte
	total := 0
	for {
		f, err := sock.RecvBytes(0)
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
		total += len(f)
		if len(frames) > replaywire.MaxReplyMessages || total > replaywire.MaxReplyBytes {
			return nil, fmt.Errorf("%w: more than %d frames or %d MiB", ErrReplayTooLarge, replaywire.MaxReplyMessages, replaywire.MaxReplyBytes>>20)
		}
		if more, err := sock.GetRcvmore(); err != nil || !more {
			return frames, err
		}
	}
}
