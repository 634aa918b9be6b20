package replayserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/jsonval"
	"github.com/gilmsg/gilmsg-go/internal/replaywire"
	"github.com/gilmsg/gilmsg-go/internal/untrusted"
	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// Limits of one replay request and reply (WIRE.md §11). The root's gap
// recovery, asking, keeps to the same ones (internal/replaywire; a test
// holds them equal): it pages on a reply of MaxReplyMessages.
const (
	// MaxReplyMessages caps the messages of one reply: the lowest seq_ids
	// that match. A reply of exactly this many may have more behind it:
	// ask again with the same request plus "after_seq_id": the last
	// seq_id received (a key of ours; Python's server has no cap).
	MaxReplyMessages = 1000
	// MaxQueryIDs caps the seq_ids or msg_ids one request may list.
	MaxQueryIDs = 10000
	// MaxRequestBytes caps the size of one request.
	MaxRequestBytes = 1 << 20
	// FullReplyBytes caps the bytes of one reply, as MaxReplyMessages its
	// messages: the server stops adding messages once a reply reaches it,
	// and a reply that did may have more behind it (page on as above). A
	// stored message larger than this is never sent (logged and skipped),
	// so a reply is below twice this, 64 MiB, which the root's recovery
	// reads at most.
	FullReplyBytes = 32 << 20
)

// What the replay server queues for one client (per connection), whatever
// high_water_mark says: a client that sends requests and never reads its
// answers (1,000 of "{}" took a server to 2.26 GB) loses the answers that
// do not fit, and the others are still served. In bytes: replayReplyQueue
// answers below 2 × [FullReplyBytes] each, 128 MiB. A REQ client, Python's
// and ours, has one request out at a time, so it never comes near.
const (
	// replayReplyQueue is the answers queued for one client (ZMQ_SNDHWM);
	// past it, an answer is dropped ([Server.DroppedReplies]). The
	// kernel's socket buffers and the one answer being written come on
	// top.
	replayReplyQueue = 2
	// replayRequestQueue is the requests queued from one client
	// (ZMQ_RCVHWM): at most this many times [MaxRequestBytes]. Past it,
	// the server stops reading that connection.
	replayRequestQueue = 8
	// replayStuckPause is how long the requests of a client whose answer
	// was just dropped are dropped too, unanswered, so that a client that
	// does not read costs no work either; then it gets another try.
	replayStuckPause = time.Second
	// replayStuckClients bounds the clients remembered as stuck.
	replayStuckClients = 1024
)

const (
	replyNoMatch  = replaywire.NoMatch
	errPrefix     = replaywire.ErrPrefix
	keyAfterSeqID = replaywire.KeyAfterSeqID
)

// Server answers replay requests for one publisher name from a
// [gilmsg.Store], as fedmsg's ReplayContext does but without its faults:
// seq_id_range works, and every request gets an answer, one "error: ..."
// frame when it is malformed or matches nothing. Its socket is a ROUTER,
// which REQ clients cannot tell from fedmsg's REP, so that an answer for
// a client that does not read can be dropped: see [replayReplyQueue].
// It owns its ZeroMQ context; one goroutine ([Server.Serve]) uses
// its socket.
type Server struct {
	st       gilmsg.Store
	log      *slog.Logger
	zctx     *zmq.Context
	sock     *zmq.Socket
	endpoint string
	name     string
	hooks    *gilmsg.Hooks

	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
	serving   sync.Mutex

	dropped atomic.Uint64 // answers for clients that did not read them
}

// New binds replay_endpoints[name] of cfg as Python does: on
// every interface, at the port of that address ("tcp://*:PORT"; a port of
// "*" picks a free one, see [Server.Endpoint]). log may be nil.
func New(cfg *gilmsg.Config, name string, st gilmsg.Store, log *slog.Logger) (*Server, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: replayserver.New needs a config", gilmsg.ErrConfig)
	}
	addr, ok := cfg.ReplayEndpoints[name]
	if !ok || addr == "" {
		return nil, &gilmsg.ConfigError{Key: "replay_endpoints", Err: fmt.Errorf("no replay endpoint for name %q", name)}
	}
	if st == nil {
		return nil, &gilmsg.ConfigError{Key: "persistent_store", Err: errors.New("a replay server needs a store")}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := strings.LastIndex(addr, ":")
	if !strings.HasPrefix(addr, "tcp://") || i < 0 {
		return nil, &gilmsg.ConfigError{Key: "replay_endpoints", Err: fmt.Errorf("%q: %q is not tcp://HOST:PORT", name, addr)}
	}
	zctx, err := zsock.NewContext(max(cfg.IOThreads, 1))
	if err != nil {
		return nil, err
	}
	s := &Server{st: st, log: log, zctx: zctx, name: name, closed: make(chan struct{}), done: make(chan struct{})}
	so := zsock.FromConfig(cfg)
	so.MaxMsgSize = MaxRequestBytes
	if s.sock, err = zsock.New(zctx, zmq.ROUTER, so); err != nil {
		zctx.Term()
		return nil, asConfigError(err)
	}
	// Mandatory: a full queue is an error to count, not a silent drop.
	for _, set := range []func() error{
		func() error { return s.sock.SetSndhwm(replayReplyQueue) },
		func() error { return s.sock.SetRcvhwm(replayRequestQueue) },
		func() error { return s.sock.SetRouterMandatory(1) },
	} {
		if err := set(); err != nil {
			s.sock.Close()
			zctx.Term()
			return nil, fmt.Errorf("replay server socket: %w", err)
		}
	}
	if err := s.sock.Bind("tcp://*:" + addr[i+1:]); err != nil {
		s.sock.Close()
		zctx.Term()
		return nil, &gilmsg.ConfigError{Key: "replay_endpoints", Err: fmt.Errorf("%q: cannot bind %s: %w", name, addr, err)}
	}
	bound, _ := s.sock.GetLastEndpoint()
	s.endpoint = strings.Replace(bound, "//0.0.0.0:", "//127.0.0.1:", 1)
	return s, nil
}

// SetHooks reports each request to h.ReplayRequest: served, or refused
// (an "error: ..." answer, no match included). Call it before Serve.
func (s *Server) SetHooks(h *gilmsg.Hooks) { s.hooks = h }

// Endpoint is the bound address read back from ZeroMQ (127.0.0.1 standing
// for every interface).
func (s *Server) Endpoint() string { return s.endpoint }

// Serve answers requests until ctx ends or the server closes; it then
// closes the socket and returns nil (or ctx's error). Call it once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.TryLock() {
		return errors.New("gilmsg: replayserver.Server.Serve called twice")
	}
	defer close(s.done)
	defer s.sock.Close()
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	stuck := map[string]time.Time{} // by route: when its answer was dropped
	for {
		select {
		case <-s.closed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		polled, err := poller.Poll(100 * time.Millisecond)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("replay server: poll: %w", err)
		}
		if len(polled) == 0 {
			continue
		}
		frames, err := s.sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				continue
			}
			return fmt.Errorf("replay server: receive: %w", err)
		}
		// As REP does: the frames up to the first empty one are the route
		// back, and a request without one is dropped.
		i := slices.IndexFunc(frames, func(f []byte) bool { return len(f) == 0 })
		if i < 1 {
			continue
		}
		route := string(frames[0])
		if at, ok := stuck[route]; ok && time.Since(at) < replayStuckPause {
			s.dropped.Add(1)
			continue
		}
		reply := s.Answer(ctx, frames[i+1:])
		s.hooks.ReportReplayRequest(len(reply) != 1 || !bytes.HasPrefix(reply[0], []byte(errPrefix)))
		parts := make([]any, 0, i+1+len(reply))
		for _, p := range frames[:i+1] {
			parts = append(parts, p)
		}
		for _, p := range reply {
			parts = append(parts, p)
		}
		_, err = s.sock.SendMessageDontwait(parts...)
		delete(stuck, route)
		if err != nil {
			// EAGAIN: the client has replayReplyQueue answers it has not
			// read; EHOSTUNREACH: it is gone.
			s.dropped.Add(1)
			s.log.Debug("gilmsg: replay server: answer dropped", slog.String("name", s.name), slog.Any("error", err))
			if zsock.IsEAGAIN(err) {
				if len(stuck) >= replayStuckClients {
					clear(stuck)
				}
				stuck[route] = time.Now()
			}
		}
	}
}

// DroppedReplies is how many requests got no answer because their client
// was gone or had not read its earlier answers (see [replayReplyQueue]).
func (s *Server) DroppedReplies() uint64 { return s.dropped.Load() }

// Close stops Serve (waiting for it, if it runs) and releases the server.
// It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.serving.TryLock() {
			// Serve never ran: the socket is ours to close.
			s.sock.Close()
		} else {
			<-s.done
		}
		s.zctx.Term()
	})
	return nil
}

// Answer returns the reply frames for one request's frames: one frame per
// matching message (its canonical JSON, in seq_id order, at most
// [MaxReplyMessages], stopping once they reach [FullReplyBytes]), or one
// "error: ..." frame. Never zero frames.
func (s *Server) Answer(ctx context.Context, frames [][]byte) [][]byte {
	errFrame := func(format string, args ...any) [][]byte {
		msg := fmt.Sprintf(format, args...)
		s.log.Info("gilmsg: replay request refused", slog.String("name", s.name), slog.String("reason", msg))
		return [][]byte{[]byte(errPrefix + "'" + msg + "'")}
	}
	if len(frames) != 1 {
		return errFrame("A request is one frame, got %d", len(frames))
	}
	q, err := ParseQuery(frames[0])
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) {
			return errFrame("%s", qe.Reason)
		}
		return errFrame("%v", err)
	}
	q.Limit = MaxReplyMessages
	qctx, cancel := context.WithTimeout(ctx, gilmsg.DefaultStoreTimeout)
	defer cancel()
	msgs, err := s.st.Query(qctx, q)
	if err != nil {
		s.log.Error("gilmsg: replay server: store", slog.Any("error", err))
		return errFrame("The store failed: %v", err)
	}
	out := make([][]byte, 0, len(msgs))
	size := 0
	for _, m := range msgs {
		if size >= FullReplyBytes {
			break
		}
		v, err := gilmsg.DecodeJSON(m.Body)
		if err == nil {
			var body []byte
			if body, err = gilmsg.MarshalCanonical(v); err == nil && len(body) <= FullReplyBytes {
				out = append(out, body)
				size += len(body)
				continue
			}
			if err == nil {
				// Sent, it would take the reply past what an asker reads.
				s.log.Error("gilmsg: replay server: stored message too large to replay", slog.Int64("seq_id", m.SeqID), slog.Int("bytes", len(body)))
				continue
			}
		}
		// A row nobody can send again: said loudly, and the rest still go.
		s.log.Error("gilmsg: replay server: stored message is not JSON", slog.Int64("seq_id", m.SeqID), slog.Any("error", err))
	}
	if len(out) == 0 {
		return errFrame(replyNoMatch)
	}
	return out
}

// QueryError is a replay request the server refuses.
type QueryError struct{ Reason string }

func (e *QueryError) Error() string { return "gilmsg: replay request: " + e.Reason }

// ParseQuery reads a replay request (WIRE.md §11): a JSON object
// whose keys seq_id, seq_ids, seq_id_range, msg_id, msg_ids and time are
// OR-ed, plus after_seq_id for paging. {} asks for everything. Integers
// may also be integral floats or decimal strings, as Python's server
// (SQLite's type affinity) takes them.
func ParseQuery(raw []byte) (*gilmsg.Query, error) {
	bad := func(format string, args ...any) error {
		return &QueryError{Reason: fmt.Sprintf(format, args...)}
	}
	if len(raw) > MaxRequestBytes {
		return nil, bad("Request of %d bytes is too large (at most %d)", len(raw), MaxRequestBytes)
	}
	v, err := gilmsg.DecodeJSON(raw)
	if err != nil {
		var se *gilmsg.JSONSyntaxError
		if errors.As(err, &se) {
			return nil, bad("Request is not JSON: offset %d: %s", se.Offset, se.Msg)
		}
		return nil, bad("Request is not JSON: %v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, bad("Request is a JSON %s, not an object", jsonval.Kind(v))
	}
	q := &gilmsg.Query{}
	named := false
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		val := obj[key]
		wrong := func() error { return bad("Something went wrong when processing the field %s", untrusted.Quote(key)) }
		switch key {
		case "seq_id":
			n, ok := queryInt(val)
			if !ok {
				return nil, wrong()
			}
			q.SeqIDs = append(q.SeqIDs, n)
		case "seq_ids":
			list, ok := val.([]any)
			if !ok {
				return nil, wrong()
			}
			if len(list)+len(q.SeqIDs) > MaxQueryIDs {
				return nil, bad("Too many seq_ids: %d (at most %d per request)", len(list), MaxQueryIDs)
			}
			for _, x := range list {
				n, ok := queryInt(x)
				if !ok {
					return nil, wrong()
				}
				q.SeqIDs = append(q.SeqIDs, n)
			}
		case "seq_id_range":
			pair, ok := val.([]any)
			if !ok || len(pair) != 2 {
				return nil, bad("Ill-format %s field", untrusted.Quote(key))
			}
			a, ok1 := queryInt(pair[0])
			b, ok2 := queryInt(pair[1])
			if !ok1 || !ok2 {
				return nil, wrong()
			}
			q.SeqIDRange = &[2]int64{a, b}
		case "msg_id":
			s, ok := val.(string)
			if !ok {
				return nil, wrong()
			}
			q.MsgIDs = append(q.MsgIDs, s)
		case "msg_ids":
			list, ok := val.([]any)
			if !ok {
				return nil, wrong()
			}
			if len(list)+len(q.MsgIDs) > MaxQueryIDs {
				return nil, bad("Too many msg_ids: %d (at most %d per request)", len(list), MaxQueryIDs)
			}
			for _, x := range list {
				s, ok := x.(string)
				if !ok {
					return nil, wrong()
				}
				q.MsgIDs = append(q.MsgIDs, s)
			}
		case "time":
			pair, ok := val.([]any)
			if !ok || len(pair) != 2 {
				return nil, bad("Ill-format %s field", untrusted.Quote(key))
			}
			a, ok1 := queryFloat(pair[0])
			b, ok2 := queryFloat(pair[1])
			if !ok1 || !ok2 {
				return nil, wrong()
			}
			q.Time = &[2]float64{a, b}
		case keyAfterSeqID:
			n, ok := queryInt(val)
			if !ok {
				return nil, wrong()
			}
			q.AfterSeqID = n
			continue
		default:
			return nil, bad("Unsupported field: %s", untrusted.Quote(key))
		}
		named = true
	}
	q.All = !named
	return q, nil
}

func queryInt(v any) (int64, bool) {
	if s, ok := v.(string); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return n, err == nil
	}
	if _, ok := v.(bool); ok {
		return 0, false
	}
	n, err := jsonval.Int64(v)
	return n, err == nil
}

func queryFloat(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = x
	default:
		return 0, false
	}
	// Past these, no date can be formatted (Python raises too).
	return f, !math.IsNaN(f) && math.Abs(f) < 1e11
}

// asConfigError makes an option zmq refused a *gilmsg.ConfigError naming
// its fedmsg key, as the root reports its own sockets' options.
func asConfigError(err error) error {
	var oe *zsock.OptionError
	if errors.As(err, &oe) {
		return &gilmsg.ConfigError{Key: oe.Key, Err: oe.Err}
	}
	return err
}
