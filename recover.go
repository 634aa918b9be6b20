package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/replaywire"
)

// GapError reports seq_ids of one publisher that a subscription knows it
// missed and could not get from the publisher's replay server yet. It is
// yielded in place of the missing messages, and the subscription goes on:
// it asks again, with backoff, while it runs and after a restart (with a
// [WithStatusFile]), and yields what comes, late. When it stops asking (see
// [WithGapMaxAge]) it yields a second GapError for them, with GivenUp set.
// It unwraps to [ErrGap] and to the cause, when there is one (a
// [ReplayError], or a [ValidationError] for a replayed message that did not
// validate); without a cause, the store did not have them.
type GapError struct {
	Name    string // the publisher's name (a key of endpoints)
	From    int64  // the first missing seq_id
	To      int64  // the last missing seq_id; 0 when unknown
	GivenUp bool   // no longer asked for: they will not be yielded
	Err     error
}

func (e *GapError) Error() string {
	to := strconv.FormatInt(e.To, 10)
	if e.To == 0 {
		to = "?"
	}
	s := fmt.Sprintf("gilmsg: missed messages %d..%s of %q", e.From, to, e.Name)
	if e.GivenUp {
		s += " (given up)"
	}
	if e.Err != nil {
		return s + ": " + e.Err.Error()
	}
	return s + ": its store does not have them"
}

func (e *GapError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrGap}
	}
	return []error{ErrGap, e.Err}
}

// ReplayError says a replay server did not answer, or answered what is not
// a reply.
type ReplayError struct {
	Name     string
	Endpoint string
	Err      error
}

func (e *ReplayError) Error() string {
	return fmt.Sprintf("gilmsg: replay endpoint %s of %q: %v", e.Endpoint, e.Name, e.Err)
}

func (e *ReplayError) Unwrap() error { return e.Err }

type replayOptions struct {
	off        bool
	statusFile string
	checkpoint string // checkpoint.go
	timeout    time.Duration
	maxAge     time.Duration
}

// WithoutReplay turns off seq_id tracking and gap recovery for this
// subscription, whatever replay_endpoints says.
func WithoutReplay() SubscribeOption { return func(o *subOptions) { o.replay.off = true } }

// WithReplayTimeout bounds the wait for each answer of a replay server.
// Default: the config's timeout (2 s).
func WithReplayTimeout(d time.Duration) SubscribeOption {
	return func(o *subOptions) { o.replay.timeout = d }
}

// WithGapMaxAge is how long a subscription keeps asking for seq_ids it missed
// (counted from when it first noticed them, across restarts with a
// [WithStatusFile]) before it gives them up with a [GapError] whose GivenUp
// is set, a warning in the log and [Stats].GapsGivenUp. Default:
// replay_gap_max_age ([DefaultGapMaxAge] when unset). Besides, at most
// 1 024 separate runs of missing seq_ids are kept per publisher name; past
// that the oldest run is given up the same way.
func WithGapMaxAge(d time.Duration) SubscribeOption {
	return func(o *subOptions) { o.replay.maxAge = d }
}

// DefaultGapMaxAge is how long missed seq_ids are asked for when neither
// [WithGapMaxAge] nor replay_gap_max_age says.
const DefaultGapMaxAge = time.Hour

// WithStatusFile keeps, in the file at path, what the subscription has
// delivered from each publisher (the highest seq_id, and the seq_ids below
// it still missing), and catches up from there when it starts: before any
// live message, it yields, page by page, what the publishers' replay
// servers have after that seq_id, and asks again for the missing ones. A
// message counts as delivered once [Subscription.Next] returned it and
// its ACK went, or with [WithManualAck] once [Message.Ack] or [Message.Done]
// was called for it. The file is rewritten (a new file renamed over the
// old, no fsync) at each delivery, so a killed process yields at most the
// message it was handling again. Default: no file.
func WithStatusFile(path string) SubscribeOption {
	return func(o *subOptions) { o.replay.statusFile = path }
}

// recovery is a subscription's replay client (WIRE.md §11): it tracks the
// seq_ids of each publisher name that has a replay endpoint, drops what
// it has already taken in, and asks the replay server for what it missed.
// It runs in the subscription's reader, which owns it; the status file has
// a lock of its own, for Message.Ack on other goroutines.
type recovery struct {
	s       *Subscription
	eps     map[string]string
	timeout time.Duration
	maxAge  time.Duration
	srcs    map[string]*publisherState
	queue   []queued
	status  *statusFile
	seed    maphash.Seed
	saidOut bool // a seq_id out of range was logged
}

// publisherState is what recovery knows of one publisher name.
type publisherState struct {
	name  string
	epoch uint32 // bumped when its seq_ids go back: a new run
	last  int64  // highest seq_id taken in; 0: none yet
	open  bool   // catching up: what follows last is still to be asked for
	// onDrop: the catch-up is only the ask a dropped connection starts
	// (reconnect.go). A publisher that restarts takes its replay server
	// down with it, so that ask failing is no evidence of loss: no
	// GapError for it. What was really missed shows as a hole when the
	// publisher's next message comes.
	onDrop  bool
	holes   []hole // sorted, disjoint, below last
	tries   int    // rounds in a row without progress
	next    time.Time
	lastErr error // why the last round failed; nil once one works
	noRange bool  // its server refuses seq_id_range (Python's): ask by seq_ids
	recent  [recentSeqs]seqMsg
	said    bool // a huge jump or a new run was logged
}

// seqMsg ties a seq_id taken in to its msg_id (hashed), to tell a copy
// from a publisher that started its seq_ids again.
type seqMsg struct {
	seq int64
	id  uint64
}

// hole is a run of seq_ids not taken in.
type hole struct {
	from, to int64
	since    time.Time
	tries    int  // rounds that asked for it in vain
	reported bool // its GapError was yielded
	cause    error
}

type queued struct {
	m   *Message
	err error
}

const (
	// maxSeqID bounds the seq_ids tracked; a message above it is yielded
	// untracked, and a status file above it is refused.
	maxSeqID = 1 << 62
	// maxHoles bounds the runs of missing seq_ids kept per name.
	maxHoles   = 1024
	recentSeqs = 1024
	// retryMissing: a seq_id taken by another process sharing the store
	// may not be committed yet when its neighbour arrives; ask once more.
	retryMissing = 100 * time.Millisecond
	// Rounds that bring nothing are repeated after a doubling delay.
	backoffFirst = 500 * time.Millisecond
	backoffMax   = 30 * time.Second
	// bigJump: a jump past this many seq_ids is logged.
	bigJump = replaywire.MaxQueryIDs
)

// startRecovery sets up gap recovery when some endpoint name has a
// replay endpoint, and the catch-up of a status file, which Next runs.
func (s *Subscription) startRecovery() error {
	cfg := s.bus.cfg
	if s.opts.replay.off || len(cfg.ReplayEndpoints) == 0 {
		return nil
	}
	r := &recovery{s: s, eps: cfg.ReplayEndpoints, timeout: s.opts.replay.timeout,
		maxAge: s.opts.replay.maxAge, srcs: map[string]*publisherState{}, seed: maphash.MakeSeed()}
	if r.timeout <= 0 {
		r.timeout = cfg.TimeoutDuration()
	}
	if r.timeout <= 0 {
		r.timeout = 2 * time.Second
	}
	if r.maxAge <= 0 {
		r.maxAge = seconds(cfg.ReplayGapMaxAge)
	}
	if r.maxAge <= 0 {
		r.maxAge = DefaultGapMaxAge
	}
	if p := s.opts.replay.statusFile; p != "" {
		st, err := loadStatus(p)
		if err != nil {
			return err
		}
		r.status = st
		for name, e := range st.names {
			if _, ok := r.eps[name]; !ok {
				continue
			}
			src := r.source(name)
			src.last, src.open, src.onDrop = e.top, true, false
			for _, h := range e.holes {
				src.holes = append(src.holes, hole{from: h.from, to: h.to, since: h.since})
			}
		}
	}
	s.rec = r
	return nil
}

func (r *recovery) source(name string) *publisherState {
	src := r.srcs[name]
	if src == nil {
		src = &publisherState{name: name}
		r.srcs[name] = src
	}
	return src
}

// admit takes in a valid live message; false leaves it to the caller
// (nothing to track), true means recovery took it: dropped as a copy, or
// queued after what its gap recovered.
func (r *recovery) admit(ctx context.Context, m *Message) bool {
	if r == nil {
		return false
	}
	seq, ok := m.SeqID()
	if !ok {
		return false
	}
	if _, tracked := r.eps[m.Name]; !tracked {
		return false
	}
	if seq < 1 || seq > maxSeqID {
		if !r.saidOut {
			r.saidOut = true
			r.s.bus.log.Warn("gilmsg: seq_id out of range, message not tracked", slog.String("name", m.Name), slog.Int64("seq_id", seq))
		}
		return false
	}
	src := r.source(m.Name)
	id := maphash.String(r.seed, m.MsgID)
	switch {
	case src.last == 0 && !src.open && len(src.holes) == 0:
		// The first message of this name: tracking starts here.
		src.last = seq
		r.status.begin(src.name, src.epoch, seq-1)
	case seq > src.last:
		from := src.last + 1
		src.open = false // the live message says where the catch-up ends
		src.last = seq
		src.note(seq, id)
		if seq > from {
			if seq-from > bigJump && !src.said {
				src.said = true
				r.s.bus.log.Warn("gilmsg: seq_ids jumped", slog.String("name", src.name),
					slog.Int64("from", from-1), slog.Int64("to", seq))
			}
			r.addHole(src, from, seq-1)
			r.recover(ctx, src)
		}
		r.push(src, m)
		return true
	case src.take(seq):
		// Missing, and here at last.
	default:
		switch src.judge(seq, id) {
		case copyOf:
			// Recovered already, or a publisher's resend.
			r.s.bus.stats.duplicates.Add(1)
			return true
		case newRun:
			r.newRun(src, seq)
		}
	}
	src.note(seq, id)
	r.push(src, m)
	return true
}

func (src *publisherState) note(seq int64, id uint64) {
	src.recent[seq%recentSeqs] = seqMsg{seq: seq, id: id}
}

type verdict int

const (
	late verdict = iota
	copyOf
	newRun
)

// judge tells a message at or below the last seq_id and not missing: a
// copy when it has the msg_id its seq_id had, late when its seq_id is
// recent but was never taken in, else the start of a new run.
func (src *publisherState) judge(seq int64, id uint64) verdict {
	if e := src.recent[seq%recentSeqs]; e.seq == seq {
		if e.id == id {
			return copyOf
		}
		return newRun
	}
	if seq > src.last-recentSeqs {
		return late
	}
	return newRun
}

// newRun starts a new run of seq_ids for src: a publisher restarted over
// a fresh store, or two processes under one name. Its messages are
// delivered; what the old run missed is given up.
func (r *recovery) newRun(src *publisherState, seq int64) {
	r.s.bus.stats.seqResets.Add(1)
	if !src.said {
		src.said = true
		r.s.bus.log.Warn("gilmsg: seq_ids went back: taken as a new run (publisher restarted over a fresh store, or two processes under one name)",
			slog.String("name", src.name), slog.Int64("last", src.last), slog.Int64("seq_id", seq))
	}
	if src.last-seq < recentSeqs {
		// The recent ids of the old run would mark the new one's as copies.
		src.recent = [recentSeqs]seqMsg{}
	}
	r.giveUp(src, len(src.holes), errSeqRestarted)
	src.epoch++
	src.last, src.open, src.tries, src.next = seq, false, 0, time.Time{}
	r.status.begin(src.name, src.epoch, seq-1)
}

var errSeqRestarted = errors.New("the publisher's seq_ids started again")

// push queues m, tagged for the status file.
func (r *recovery) push(src *publisherState, m *Message) {
	m.ckEpoch = src.epoch + 1
	r.queue = append(r.queue, queued{m: m})
}

// addHole records from..to as missing, giving up the oldest runs past
// maxHoles.
func (r *recovery) addHole(src *publisherState, from, to int64) {
	src.holes = append(src.holes, hole{from: from, to: to, since: time.Now()})
	if len(src.holes) > maxHoles {
		r.giveUp(src, len(src.holes)-maxHoles, fmt.Errorf("more than %d runs of seq_ids missing", maxHoles))
	}
}

// take removes seq from src's holes and reports whether it was missing.
func (src *publisherState) take(seq int64) bool {
	i, found := src.find(seq)
	if !found {
		return false
	}
	h := &src.holes[i]
	switch {
	case h.from == h.to:
		src.holes = slices.Delete(src.holes, i, i+1)
	case seq == h.from:
		h.from++
	case seq == h.to:
		h.to--
	default:
		tail := *h
		tail.from = seq + 1
		h.to = seq - 1
		src.holes = slices.Insert(src.holes, i+1, tail)
	}
	return true
}

// find returns the index of the hole holding seq.
func (src *publisherState) find(seq int64) (int, bool) {
	return slices.BinarySearchFunc(src.holes, seq, func(h hole, seq int64) int {
		switch {
		case h.to < seq:
			return -1
		case h.from > seq:
			return 1
		}
		return 0
	})
}

// giveUp ends the first n holes of src: each is yielded as a GapError
// with GivenUp, logged, counted, and marked handled in the status file.
func (r *recovery) giveUp(src *publisherState, n int, why error) {
	for _, h := range src.holes[:n] {
		cause := why
		if h.cause != nil {
			cause = fmt.Errorf("%w (last failure: %w)", why, h.cause)
		}
		err := &GapError{Name: src.name, From: h.from, To: h.to, GivenUp: true, Err: cause}
		r.queue = append(r.queue, queued{err: err})
		r.s.bus.stats.gapsGivenUp.Add(1)
		r.s.bus.opts.hooks.gapGivenUp()
		r.s.bus.log.Warn("gilmsg: gave up missed messages", slog.String("name", src.name),
			slog.Int64("from", h.from), slog.Int64("to", h.to), slog.Any("error", cause))
		r.status.done(src.name, src.epoch, h.from, h.to)
	}
	src.holes = slices.Delete(src.holes, 0, n)
}

// pop returns the next queued message or gap, its ACK queued as a live
// one's is.
func (r *recovery) pop(ctx context.Context) (*Message, bool, error) {
	if r == nil || len(r.queue) == 0 {
		return nil, false, nil
	}
	q := r.queue[0]
	r.queue[0] = queued{}
	r.queue = r.queue[1:]
	if len(r.queue) == 0 {
		r.queue = nil // let a page's worth of backing array go
	}
	if q.m == nil {
		return nil, true, q.err
	}
	s := r.s
	s.acks.due(q.m.Envelope) // as handle does for a live one
	if !s.opts.manualAck {
		s.handled(q.m)
	}
	return q.m, true, nil
}

// handled records m as delivered in the status file.
func (s *Subscription) handled(m *Message) {
	r := s.rec
	if r == nil || r.status == nil || m.ckEpoch == 0 {
		return
	}
	seq, _ := m.SeqID()
	if err := r.status.handled(m.Name, m.ckEpoch-1, seq, m.Timestamp); err != nil {
		r.status.logOnce(s.bus.log, err)
	}
}

// close writes the status file one last time.
func (r *recovery) close() {
	if r != nil && r.status != nil {
		if err := r.status.flush(); err != nil {
			r.s.bus.log.Error("gilmsg: status file", slog.Any("error", err))
		}
	}
}
