package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// GapError reports seq_ids of one publisher that a subscription knows it
// missed and could not get from the publisher's replay server. It is
// yielded in place of the missing messages, and the subscription goes on.
// It unwraps to [ErrGap] and to the cause, when there is one (a
// [ReplayError], or a [ValidationError] for a replayed message that did not
// validate); without a cause, the store did not have them.
type GapError struct {
	Name string // the publisher's name (a key of endpoints)
	From int64  // the first missing seq_id
	To   int64  // the last missing seq_id; 0 when unknown (catch-up at start)
	Err  error
}

func (e *GapError) Error() string {
	to := strconv.FormatInt(e.To, 10)
	if e.To == 0 {
		to = "?"
	}
	s := fmt.Sprintf("gilmsg: missed messages %d..%s of %q", e.From, to, e.Name)
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
}

// NoReplay turns off seq_id tracking and gap recovery for this
// subscription, whatever replay_endpoints says.
func NoReplay() SubscribeOption { return func(o *subOptions) { o.replay.off = true } }

// ReplayTimeout bounds the wait for each answer of a replay server.
// Default: the config's timeout (2 s).
func ReplayTimeout(d time.Duration) SubscribeOption {
	return func(o *subOptions) { o.replay.timeout = d }
}

// StatusFile keeps, in the file at path, the last seq_id the subscription
// yielded from each publisher, and catches up from there when it starts:
// before any live message, it yields what the publishers' replay servers
// have after those seq_ids. The file is written at most once a second and
// when the subscription closes. Default: no file.
func StatusFile(path string) SubscribeOption {
	return func(o *subOptions) { o.replay.statusFile = path }
}

// recovery is a subscription's replay client (WIRE.md §11): it tracks the
// last seq_id of each publisher name that has a replay endpoint, drops what
// it has already yielded, and fills gaps from the replay server. It runs
// in the subscription's reader, which owns it.
type recovery struct {
	s       *Subscription
	eps     map[string]string
	timeout time.Duration
	last    map[string]int64          // highest seq_id taken in, per name
	holes   map[string]map[int64]bool // reported missing; welcome if they come late
	down    map[string]time.Time      // replay server failed: not asked again before
	downErr map[string]error
	queue   []queued
	status  *statusFile
}

type queued struct {
	m   *Message
	err error
}

const (
	maxHoles = 4096
	// retryMissing: a seq_id taken by another process sharing the store
	// may not be committed yet when its neighbour arrives; ask once more.
	retryMissing = 100 * time.Millisecond
)

// startRecovery sets up gap recovery when some endpoint name has a
// replay endpoint, and runs the catch-up of a status file.
func (s *Subscription) startRecovery(ctx context.Context) error {
	cfg := s.bus.cfg
	if s.opts.replay.off || len(cfg.ReplayEndpoints) == 0 {
		return nil
	}
	r := &recovery{s: s, eps: cfg.ReplayEndpoints, timeout: s.opts.replay.timeout,
		last: map[string]int64{}, holes: map[string]map[int64]bool{},
		down: map[string]time.Time{}, downErr: map[string]error{}}
	if r.timeout <= 0 {
		r.timeout = cfg.TimeoutDuration()
	}
	if r.timeout <= 0 {
		r.timeout = 2 * time.Second
	}
	if p := s.opts.replay.statusFile; p != "" {
		st, err := loadStatus(p)
		if err != nil {
			return err
		}
		r.status = st
	}
	s.rec = r
	if r.status != nil {
		for _, name := range sortedKeys(r.status.names) {
			if _, ok := r.eps[name]; ok {
				r.catchUp(ctx, name, r.status.names[name])
			}
		}
	}
	return nil
}

// admit takes in a valid live message; false leaves it to the caller
// (nothing to track), true means recovery took it: dropped as already
// yielded, or queued after what its gap recovered.
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
	last, known := r.last[m.Name]
	switch {
	case !known:
	case seq <= last:
		if h := r.holes[m.Name]; h[seq] {
			delete(h, seq)
			r.queue = append(r.queue, queued{m: m})
			return true
		}
		// Recovered already, or a publisher's resend.
		r.s.bus.stats.duplicates.Add(1)
		return true
	case seq > last+1:
		r.fill(ctx, m.Name, last+1, seq-1)
	}
	r.last[m.Name] = seq
	r.queue = append(r.queue, queued{m: m})
	return true
}

// pop returns the next queued message or gap, ACKing the message first
// as a live one would be.
func (r *recovery) pop(ctx context.Context) (*Message, error, bool) {
	if r == nil || len(r.queue) == 0 {
		return nil, nil, false
	}
	q := r.queue[0]
	r.queue[0] = queued{}
	r.queue = r.queue[1:]
	if q.m == nil {
		return nil, q.err, true
	}
	s := r.s
	if s.opts.ack && !s.opts.manualAck {
		if err := s.ack(ctx, q.m.Envelope); err != nil && !s.ackErrSaid {
			s.ackErrSaid = true
			s.bus.log.Error("gilmsg: cannot ACK", shortAttr("msg_id", q.m.MsgID), slog.Any("error", err))
			return q.m, err, true
		}
	}
	if r.status != nil {
		if seq, ok := q.m.SeqID(); ok {
			if err := r.status.note(q.m.Name, seq, q.m.Timestamp); err != nil {
				s.bus.log.Error("gilmsg: status file", slog.Any("error", err))
			}
		}
	}
	return q.m, nil, true
}

// close writes the status file one last time.
func (r *recovery) close() {
	if r != nil && r.status != nil {
		if err := r.status.flush(); err != nil {
			r.s.bus.log.Error("gilmsg: status file", slog.Any("error", err))
		}
	}
}

// fill asks name's replay server for seq_ids from..to, by seq_ids (which
// Python's server answers too), and queues what it gets in order, with a
// GapError for each run it could not get.
func (r *recovery) fill(ctx context.Context, name string, from, to int64) {
	got := map[int64]*Message{}
	skip := map[int64]bool{} // on other topics: not for this subscription
	var cause error
	ask := func() {
		for lo := from; lo <= to; lo += MaxReplyMessages {
			hi := min(to, lo+MaxReplyMessages-1)
			var ids []int64
			for id := lo; id <= hi; id++ {
				if got[id] == nil && !skip[id] {
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				continue
			}
			if err := r.request(ctx, name, map[string]any{"seq_ids": ids}, lo, hi, got, skip); err != nil {
				cause = err
				return
			}
		}
	}
	ask()
	if cause == nil && int64(len(got)+len(skip)) < to-from+1 {
		select {
		case <-time.After(retryMissing):
			ask()
		case <-ctx.Done():
		}
	}
	var gapFrom int64
	flush := func(end int64) {
		if gapFrom != 0 {
			r.queue = append(r.queue, queued{err: &GapError{Name: name, From: gapFrom, To: end, Err: cause}})
			gapFrom = 0
		}
	}
	for id := from; id <= to; id++ {
		switch {
		case got[id] != nil:
			flush(id - 1)
			r.queue = append(r.queue, queued{m: got[id]})
		case skip[id]:
			flush(id - 1)
		default:
			if gapFrom == 0 {
				gapFrom = id
			}
			r.hole(name, id)
		}
	}
	flush(to)
}

func (r *recovery) hole(name string, id int64) {
	h := r.holes[name]
	if h == nil || len(h) >= maxHoles {
		h = map[int64]bool{}
		r.holes[name] = h
	}
	h[id] = true
}

// catchUp queues what name's replay server has after the status file's
// seq_id: by seq_id_range, paged; a server that cannot do ranges (Python's)
// is asked by time from the saved timestamp instead.
func (r *recovery) catchUp(ctx context.Context, name string, saved statusEntry) {
	r.last[name] = saved.SeqID
	from := saved.SeqID + 1
	const maxSeq = 1<<53 - 1
	for {
		got := map[int64]*Message{}
		skip := map[int64]bool{}
		err := r.request(ctx, name, map[string]any{"seq_id_range": []int64{from, maxSeq}}, from, maxSeq, got, skip)
		var qe *replayRefusal
		if errors.As(err, &qe) {
			// Python's server fails every seq_id_range (WIRE.md §11).
			got, skip = map[int64]*Message{}, map[int64]bool{}
			err = r.request(ctx, name, map[string]any{"time": []int64{saved.Timestamp, time.Now().Unix() + 3600}}, from, maxSeq, got, skip)
			r.queueSorted(name, got)
			if err != nil {
				r.queue = append(r.queue, queued{err: &GapError{Name: name, From: from, Err: err}})
			}
			return
		}
		if err != nil {
			r.queue = append(r.queue, queued{err: &GapError{Name: name, From: from, Err: err}})
			return
		}
		n := len(got) + len(skip)
		top := r.queueSorted(name, got)
		for id := range skip {
			top = max(top, id)
		}
		if n < MaxReplyMessages || top < from {
			return
		}
		from = top + 1
	}
}

// queueSorted queues got in seq_id order and returns the highest seq_id.
func (r *recovery) queueSorted(name string, got map[int64]*Message) int64 {
	ids := make([]int64, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	top := int64(0)
	for _, id := range ids {
		r.queue = append(r.queue, queued{m: got[id]})
		top = id
	}
	if top > r.last[name] {
		r.last[name] = top
	}
	return top
}

// replayRefusal is an "error: ..." answer other than "no match".
type replayRefusal struct{ text string }

func (e *replayRefusal) Error() string { return "the server refused the request: " + e.text }

// request sends one replay request for name and sorts the answer: valid
// messages with a seq_id in [lo, hi] on this subscription's topics into
// got, those on other topics into skip. It fails when the server does not
// answer in time, refuses, or answers garbage.
func (r *recovery) request(ctx context.Context, name string, req map[string]any, lo, hi int64, got map[int64]*Message, skip map[int64]bool) error {
	ep := r.eps[name]
	if until, ok := r.down[name]; ok && time.Now().Before(until) {
		return r.downErr[name]
	}
	body, err := MarshalCanonical(req)
	if err != nil {
		return err
	}
	frames, err := replayRequest(ctx, r.s.bus.zctx, ep, body, r.timeout, r.s.bus.opts.maxMsgSize)
	if err != nil {
		err = &ReplayError{Name: name, Endpoint: ep, Err: err}
		if ctx.Err() == nil {
			// Do not stall every message on a server that is down.
			r.down[name] = time.Now().Add(r.timeout)
			r.downErr[name] = err
		}
		return err
	}
	delete(r.down, name)
	if len(frames) == 1 && strings.HasPrefix(string(frames[0]), errPrefix) {
		text := string(frames[0])
		if strings.Contains(text, replyNoMatch) {
			return nil
		}
		return &ReplayError{Name: name, Endpoint: ep, Err: &replayRefusal{text: text}}
	}
	s := r.s
	var garbage error
	for _, f := range frames {
		env, err := ParseEnvelope(f)
		if err != nil {
			garbage = err
			continue
		}
		seq, ok := env.SeqID()
		if !ok {
			garbage = errors.New("a replayed message without seq_id")
			continue
		}
		if seq < lo || seq > hi || got[seq] != nil {
			continue
		}
		if !strings.HasPrefix(env.Topic, s.prefix) {
			skip[seq] = true
			continue
		}
		m := &Message{Envelope: env, Name: name, Endpoint: ep, Body: f, sub: s}
		if s.validate {
			if m.Signer, err = s.bus.validator.Validate(env); err != nil {
				s.reject(m, err)
				continue
			}
		}
		if s.seen != nil && env.MsgID != "" && !s.seen.add(env.MsgID) {
			skip[seq] = true // yielded already, live
			continue
		}
		got[seq] = m
	}
	if garbage != nil && len(got) == 0 {
		return &ReplayError{Name: name, Endpoint: ep, Err: fmt.Errorf("answered garbage: %w", garbage)}
	}
	if garbage != nil {
		s.bus.log.Warn("gilmsg: replay answer had garbage frames", slog.String("name", name), slog.Any("error", garbage))
	}
	return nil
}

// replayRequest does one REQ/REP exchange with a replay server: the REQ
// socket lives for this request only, so a server that never answers
// leaves nothing behind.
func replayRequest(ctx context.Context, zctx *zmq.Context, endpoint string, req []byte, timeout time.Duration, maxMsg int64) ([][]byte, error) {
	sock, err := zctx.NewSocket(zmq.REQ)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	sock.SetLinger(time.Duration(sendLingerMS(zmq.REQ, 0)) * time.Millisecond)
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
			return sock.RecvMessageBytes(0)
		}
	}
}
