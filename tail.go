package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// Message is one message read from the bus. Its envelope fields (Topic,
// Msg, MsgID, ...) are promoted from [Envelope].
type Message struct {
	*Envelope

	Name     string // the endpoints name it arrived from
	Endpoint string // the address it arrived from
	Signer   string // the certificate CN, when validated
	// Body is frame 2 exactly as received. The envelope's strings (Topic,
	// MsgID, the text Msg decodes, ...) share its memory: read it, copy
	// it, but do not change it.
	Body []byte

	sub     *Subscription
	invalid error  // why validation failed, for a message WithInvalidMessages yielded
	ckEpoch uint32 // 1 + the recovery run it counts in, for the status file; 0: not tracked
}

// received is a message and its envelope in one allocation.
type received struct {
	m   Message
	env Envelope
}

// Ack signs and publishes this message's ACK now, on the caller's
// goroutine, and returns its error; [Message.AckAsync] hands it to the
// subscription's signers instead. It is only needed with
// [WithManualAck]; otherwise a subscription ACKs each valid gilmsg
// message as it yields it (see [Subscription.Next]). Call it once the
// message has been handled as far as the publisher needs to know
// (written, stored, processed): an ACK is the publisher's proof of
// delivery, so a message dropped by the application's own filters should
// not be ACKed. Messages without
// gilmsg_version, and ACKs themselves, are never ACKed: Ack returns nil
// for them. A message that failed validation (yielded by
// [WithInvalidMessages]) is never ACKed either: Ack returns its validation
// error.
//
// With [WithManualAck], an Ack that succeeds also records the message as
// delivered in the subscription's [WithStatusFile], as [Message.Done] does.
func (m *Message) Ack(ctx context.Context) error {
	if m.invalid != nil {
		return m.invalid
	}
	if m.sub == nil || m.Envelope == nil {
		return nil
	}
	if err := m.sub.ack(ctx, m.Envelope); err != nil {
		return err
	}
	m.sub.handled(m)
	return nil
}

// AckAsync hands this message's ACK to the subscription's ACK queue and
// returns, as [Bus.PublishAsync] is to [Bus.Publish]: the queue's
// signer goroutines (GOMAXPROCS of them) sign and send it, so a reader
// that handles its messages one at a time is not held to one core's
// signing, as it is when it calls [Message.Ack] (a signature costs some
// twenty times the rest of a message's handling). Call it, like Ack,
// once the message has been handled as far as the publisher needs to
// know, with [WithManualAck]; without WithManualAck the subscription
// ACKs on its own (or not at all), and AckAsync does nothing. It ACKs
// what Ack does: nothing, and nil, for a message without
// gilmsg_version or an ACK; a message that failed validation returns
// its validation error.
//
// It waits only while the queue is full (256 ACKs or 1 MiB of msg_ids,
// the bounds of a subscription's own ACKs; see [Subscription.Next]):
// until a signer makes room, ctx ends (ctx.Err()) or the subscription
// closes ([ErrClosed]); the ACK is then not sent, and counted in
// [Stats].AckErrors. ctx bounds only that wait: an ACK queued is sent on
// the subscription's own time. An ACK queued and then not sent is
// counted there too, and the subscription's first such failure is
// logged and returned, as an [*AckError] with a nil message, by its next
// [Subscription.Next]. [Subscription.Close] sends the ACKs still
// queued, waiting at most 2 s for them. ACKs may leave in another order
// than their AckAsync calls: the publisher matches them by msg_id.
//
// A queued ACK records the message as delivered in the subscription's
// [WithStatusFile], as [Message.Done] does: the message has reached its
// user, so a crash before the ACK leaves loses the ACK (its publisher
// times out, or resends and a restarted subscriber yields the message
// again), never the message. It is safe from any goroutine.
func (m *Message) AckAsync(ctx context.Context) error {
	if m.invalid != nil {
		return m.invalid
	}
	if m.sub == nil || m.Envelope == nil || !m.sub.opts.manualAck {
		return nil
	}
	if err := m.sub.ackAsync(ctx, m.Envelope); err != nil {
		return err
	}
	m.sub.handled(m)
	return nil
}

// Done records, with [WithManualAck], that the application is done with the
// message (handled, or dropped on purpose) without ACKing it: the
// subscription's [WithStatusFile] counts it as delivered, so a restart does
// not yield it again. Without WithManualAck a message counts as delivered
// when it is yielded; Done is then not needed. It is safe from any
// goroutine, and to call twice.
func (m *Message) Done() {
	if m.invalid == nil && m.sub != nil {
		m.sub.handled(m)
	}
}

// ack sends env's ACK and remembers it for resends of env.
func (s *Subscription) ack(ctx context.Context, env *Envelope) error {
	out, err := s.bus.sendAck(ctx, env)
	if out != nil && s.seen != nil {
		s.seen.setAck(env.MsgID, out)
	}
	if err != nil {
		s.bus.stats.ackErrors.Add(1)
	}
	return err
}

// ackAsync queues env's ACK, waiting for room in the queue until ctx
// ends or the subscription closes. With WithManualAck only.
func (s *Subscription) ackAsync(ctx context.Context, env *Envelope) error {
	if !needsAck(env) {
		return nil
	}
	var err error
	if s.bus.pub == nil {
		err = errNoAckEndpoint(env.MsgID)
	} else {
		// A decoded msg_id shares the memory of its whole body.
		err = s.acks.push(ctx, s.work.Done(), strings.Clone(env.MsgID))
	}
	if err != nil {
		s.bus.stats.ackErrors.Add(1)
	}
	return err
}

// SubscribeOption configures [Bus.Subscribe] and [Bus.Tail].
type SubscribeOption func(*subOptions)

type subOptions struct {
	validate       *bool
	surfaceInvalid bool
	ack            bool
	manualAck      bool
	dedupe         int
	passive        bool
	endpoints      []namedEndpoint
	replay         replayOptions // recover.go
}

// WithoutValidation yields messages without checking signatures, whatever
// validate_signatures says.
func WithoutValidation() SubscribeOption {
	return func(o *subOptions) { f := false; o.validate = &f }
}

// WithInvalidMessages yields invalid messages too, paired with the
// [ValidationError] that says why, instead of skipping them.
func WithInvalidMessages() SubscribeOption { return func(o *subOptions) { o.surfaceInvalid = true } }

// WithoutAck turns off the ACKs a subscription sends for gilmsg messages.
func WithoutAck() SubscribeOption { return func(o *subOptions) { o.ack = false } }

// WithManualAck leaves ACKs to the caller, who calls [Message.AckAsync]
// (or [Message.Ack], to wait for the ACK to be signed and sent) once the
// message has been handled (written, stored, processed). Without
// it a subscription ACKs each valid gilmsg message as it yields it: the
// ACK then says "received by the application", not "processed", and a
// message the application drops is ACKed all the same.
func WithManualAck() SubscribeOption { return func(o *subOptions) { o.manualAck = true } }

// WithDedupe sets how many recent msg_ids a subscription remembers to drop
// resent duplicates (they are ACKed again, never yielded twice). Default
// 4096; 0 turns it off. Whatever n, it remembers at most 16 MiB of
// msg_ids, forgetting the oldest first: a publisher's msg_ids of
// 128 kB are remembered 128 at a time.
func WithDedupe(n int) SubscribeOption { return func(o *subOptions) { o.dedupe = n } }

// WithPassive binds the subscription's sockets to the endpoints instead of
// connecting to them, for publishers that connect (fedmsg's passive mode).
// Subscribe then does not wait for anyone, and a bound SUB hands its
// subscription to a publisher that connects only while its reader is
// inside [Subscription.Next].
func WithPassive() SubscribeOption { return func(o *subOptions) { o.passive = true } }

// WithEndpoints subscribes to these addresses (under the name "") instead
// of every configured endpoint.
func WithEndpoints(addrs ...string) SubscribeOption {
	return func(o *subOptions) {
		for _, a := range addrs {
			o.endpoints = append(o.endpoints, namedEndpoint{addr: a})
		}
	}
}

// Subscription reads the messages whose full topic starts with a prefix,
// from one SUB socket per endpoint. Read it from one goroutine at a time;
// Close may be called from any goroutine.
type Subscription struct {
	bus      *Bus
	prefix   string
	opts     subOptions
	validate bool
	socks    []*zmq.Socket
	handles  []unsafe.Pointer // socketHandle of each socket, for reader
	mons     []*connMonitor   // one per socket, all on monGroup
	monGroup *monitorGroup
	eps      []namedEndpoint
	ready    int
	seen     *idSet
	rec      *recovery // gap recovery (recover.go); nil without replay_endpoints

	// poller waits for the sockets in Go's netpoller; its Wake interrupts
	// the wait, for Close, context watchers and lost connections.
	poller *readyPoller

	lostMu  sync.Mutex
	lost    []int // sockets whose connection must be made again
	dropped []int // sockets whose connection dropped: ask what followed (reconnect.go)

	addMu sync.Mutex
	adds  []*endpointAdd // endpoints the reader is asked to open (addEndpoints)
	neps  atomic.Int64   // len(eps), for Endpoints from any goroutine

	useMu sync.Mutex // held by the reader; Close waits for it
	// work ends when Close is called: the reader's waits on others (a
	// replay server, an ACK send) watch it, so Close never waits on them.
	work     context.Context
	stopWork context.CancelFunc
	closed   atomic.Bool
	closeMu  sync.Mutex // held by Close: a second one waits for the ACKs the first sends
	pending  []int      // sockets that may have input, in round-robin order
	queued   []bool     // queued[i]: i is in pending
	readyBuf []int      // the poller's answer, reused
	frames   [][]byte   // the frames of the message being read, reused
	reader   frameReader

	acks *ackQueue // the ACKs Next hands off; nil unless it ACKs on its own

	big       bool // the message being handled is big: release after it
	releaseMu sync.Mutex
	release   *time.Timer // hands memory back after big messages; nil until one
}

// Subscribe connects to every endpoint of every name except relay_inbound
// (WIRE.md §1), subscribes to prefix ("" is everything), and waits until
// each connection has completed its ZeroMQ handshake or the ready timeout
// ([WithReadyTimeout]) or ctx ends, whichever is first: endpoints that are
// down are normal on a fedmsg bus, so they do not make it fail.
//
// What is guaranteed when it returns: every endpoint counted by
// [Subscription.Ready] has a live connection and has been sent the
// subscription. What is not: that the publisher's side has processed it
// yet (ZeroMQ gives no signal of that to a plain SUB), so a message sent
// within microseconds may still be missed; reliable publishes resend for
// that reason.
func (b *Bus) Subscribe(ctx context.Context, prefix string, opts ...SubscribeOption) (_ *Subscription, err error) {
	o := subOptions{ack: true, dedupe: 4096}
	for _, opt := range opts {
		opt(&o)
	}
	if err := b.checkpointFile(&o); err != nil {
		return nil, err
	}
	eps := o.endpoints
	if eps == nil {
		eps = b.subscribeEndpoints()
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errNoEndpoints)
	}
	poller, err := newReadyPoller()
	if err != nil {
		return nil, err
	}
	s := &Subscription{bus: b, prefix: prefix, opts: o,
		validate: b.cfg.ValidateSignatures, poller: poller}
	s.work, s.stopWork = context.WithCancel(context.Background())
	if o.validate != nil {
		s.validate = *o.validate
	}
	if s.opts.ack && !s.opts.manualAck && b.pub == nil {
		// Nowhere to ACK from: a plain watcher. Say it once, here.
		b.log.Info("gilmsg: this bus has no endpoint, so its subscription sends no ACKs")
		s.opts.ack = false
	}
	if o.dedupe > 0 {
		s.seen = newIDSet(o.dedupe)
	}
	if s.opts.manualAck || s.opts.ack {
		s.acks = newAckQueue(s, !s.opts.manualAck)
	}
	// Close (ours or the bus's) may come while we set up: it waits for
	// useMu, and a closing bus cuts the ready wait short.
	s.useMu.Lock()
	defer s.useMu.Unlock()
	if err := b.addSub(s); err != nil {
		poller.close()
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeSockets()
			b.removeSub(s)
		}
	}()
	ctx, cancel := b.withClose(ctx)
	defer cancel()
	if s.monGroup, err = newMonitorGroup(); err != nil {
		return nil, err
	}
	so := b.sockOpts()
	var failed []error
	for _, ep := range eps {
		if err := s.open(ep, so); err != nil {
			var ee *EndpointError
			if !errors.As(err, &ee) {
				return nil, err
			}
			// Like fedmsg, which skips hosts it cannot resolve: one bad
			// address must not keep the others from being tailed.
			b.log.Warn("gilmsg: skipping endpoint", slog.String("name", ep.name), slog.String("endpoint", ep.addr), slog.Any("error", err))
			failed = append(failed, err)
		}
	}
	if len(s.socks) == 0 {
		return nil, fmt.Errorf("could not use any of %d endpoints: %w", len(eps), errors.Join(failed...))
	}
	// Read every socket once before the first wait (see readyPoller).
	s.queued = make([]bool, len(s.socks))
	for i := range s.socks {
		s.queue(i)
	}
	if !o.passive {
		s.ready = waitAll(ctx, b.opts.readyTimeout, s.mons)
		if s.ready < len(s.eps) {
			b.log.Info("gilmsg: subscribed before every endpoint connected",
				slog.Int("connected", s.ready), slog.Int("endpoints", len(s.eps)))
		}
	}
	if s.closed.Load() || b.isClosed() {
		return nil, ErrClosed
	}
	if err := s.startRecovery(); err != nil {
		return nil, err
	}
	return s, nil
}

// open adds one SUB socket, subscribed, monitored, and connected to ep (or
// bound to it, in passive mode). A connect or bind failure is an
// *EndpointError, after which nothing of the endpoint is left open.
func (s *Subscription) open(ep namedEndpoint, so sockOpts) error {
	b := s.bus
	sock, err := newSocket(b.zctx, zmq.SUB, so)
	if err != nil {
		return err
	}
	if err := sock.SetSubscribe(s.prefix); err != nil {
		sock.Close()
		return err
	}
	// The monitor stays for the subscription's life: besides readiness,
	// it reports connections libzmq will not restore by itself (a peer
	// that sent more than ZMQ_MAXMSGSIZE).
	i := len(s.socks)
	mon, err := s.monGroup.add(b.zctx, sock, withLostHook(func(string) { s.markLost(i) }), withDropHook(func() { s.markDropped(i) }))
	if err != nil {
		sock.Close()
		return err
	}
	if s.opts.passive {
		if err = sock.Bind(ep.addr); err != nil {
			err = endpointError("bind", ep.name, ep.addr, err)
		}
	} else if err = sock.Connect(ep.addr); err != nil {
		err = endpointError("connect", ep.name, ep.addr, err)
	}
	if err == nil {
		err = s.poller.add(sock, i)
	}
	if err != nil {
		sock.Monitor("", 0)
		mon.Close()
		sock.Close()
		return err
	}
	s.socks = append(s.socks, sock)
	s.handles = append(s.handles, socketHandle(sock))
	s.mons = append(s.mons, mon)
	s.eps = append(s.eps, ep)
	s.neps.Store(int64(len(s.eps)))
	return nil
}

// endpointAdd asks the reader to open more endpoints; it answers with the
// monitors of the sockets it opened.
type endpointAdd struct {
	eps  []namedEndpoint
	mons chan []*connMonitor // buffered: the reader never waits; closed by Close
}

// addEndpoints has the reader, which owns the sockets, open eps too, and
// returns the monitors of those it opened (one it cannot use is logged and
// left out, as in Subscribe) once it has. The reader must be in Next or
// about to be: call it from another goroutine, never from the reader's.
func (s *Subscription) addEndpoints(ctx context.Context, eps []namedEndpoint) ([]*connMonitor, error) {
	a := &endpointAdd{eps: eps, mons: make(chan []*connMonitor, 1)}
	s.addMu.Lock()
	if s.closed.Load() {
		s.addMu.Unlock()
		return nil, ErrClosed
	}
	s.adds = append(s.adds, a)
	s.addMu.Unlock()
	s.interrupt()
	select {
	case mons, ok := <-a.mons:
		if !ok {
			return nil, ErrClosed
		}
		return mons, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// openAdded opens, in the reader, the endpoints addEndpoints asked for.
func (s *Subscription) openAdded() {
	s.addMu.Lock()
	adds := s.adds
	s.adds = nil
	s.addMu.Unlock()
	if len(adds) == 0 {
		return
	}
	so := s.bus.sockOpts()
	for _, a := range adds {
		var mons []*connMonitor
		for _, ep := range a.eps {
			i := len(s.socks)
			if err := s.open(ep, so); err != nil {
				s.bus.log.Warn("gilmsg: skipping endpoint", slog.String("name", ep.name), slog.String("endpoint", ep.addr), slog.Any("error", err))
				continue
			}
			// Read it once before the first wait (see readyPoller).
			s.queued = append(s.queued, false)
			s.queue(i)
			mons = append(mons, s.mons[i])
		}
		a.mons <- mons
	}
}

// waitAll waits, up to timeout in all, for each monitor's socket to be
// connected, and returns how many are.
func waitAll(ctx context.Context, timeout time.Duration, mons []*connMonitor) int {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n := 0
	for _, m := range mons {
		if m.WaitConnected(wctx, 1) == nil {
			n++
		}
	}
	return n
}

// Ready is the number of endpoints that were connected when Subscribe
// returned.
func (s *Subscription) Ready() int { return s.ready }

// Endpoints is the number of endpoints the subscription uses (those it
// could not connect to are left out, and logged). It is safe from any
// goroutine.
func (s *Subscription) Endpoints() int { return int(s.neps.Load()) }

// Next returns the next message. It blocks until one arrives, ctx ends
// (ctx.Err()), or the subscription or bus closes ([ErrClosed]). An invalid
// message is skipped, unless [WithInvalidMessages] was given: then it is
// returned with its [ValidationError].
//
// A subscription that ACKs on its own (neither [WithoutAck] nor
// [WithManualAck]) queues a valid gilmsg message's ACK as Next returns
// it; signer goroutines, GOMAXPROCS of them, sign and send it while the
// reader goes on, and ACKs may leave in another order than their
// messages. The queue holds at most 256 ACKs or 1 MiB of msg_ids (plus
// one): when it is full, Next waits for room before reading on. An ACK
// that fails is counted in [Stats].AckErrors; the first of each
// subscription is logged and returned, as an [*AckError] with a nil
// message, by the next call of Next (which it wakes).
// [Subscription.Close] sends the ACKs still queued, waiting at most 2 s
// for them. With WithManualAck, [Message.AckAsync] hands ACKs to the
// same queue, and their failures come back the same way.
func (s *Subscription) Next(ctx context.Context) (*Message, error) {
	s.useMu.Lock()
	defer s.useMu.Unlock()
	if s.rec != nil {
		// Recovery waits on replay servers: Close must cut those waits
		// short whatever ctx the reader passed.
		var stop func()
		ctx, stop = joinContexts(ctx, s.work)
		defer stop()
	}
	// The reader is back: it is done with the message it was given last.
	s.releaseAfterBig()
	// Read on only while the signers keep up (ack_queue.go).
	if err := s.acks.waitRoom(ctx, s.work.Done()); err != nil {
		if s.closed.Load() {
			return nil, ErrClosed
		}
		return nil, err
	}
	for {
		if s.closed.Load() {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.acks.takeErr(); err != nil {
			return nil, err
		}
		if m, ok, err := s.rec.pop(ctx); ok {
			return m, err
		}
		// A catch-up's next page, or a retry of what is missing, before
		// live traffic.
		if s.rec.due(ctx) {
			continue
		}
		s.reconnectLost()
		s.openAdded()
		for len(s.pending) > 0 {
			i := s.pending[0]
			frames, err := s.reader.recv(s.socks[i], s.handles[i], s.frames[:0])
			s.frames = frames
			if err != nil {
				// Shifted in place, here and below: slicing off the front
				// would shrink the capacity, and appends would reallocate.
				s.pending = s.pending[:copy(s.pending, s.pending[1:])]
				s.queued[i] = false
				if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
					continue // read to EAGAIN: the poller will say when there is more
				}
				if zmq.AsErrno(err) == zmq.ETERM {
					return nil, ErrClosed
				}
				return nil, fmt.Errorf("receive from %s: %w", s.eps[i].addr, err)
			}
			// Round robin: one message from each ready socket in turn.
			copy(s.pending, s.pending[1:])
			s.pending[len(s.pending)-1] = i
			if m, ok, err := s.handle(ctx, i, frames); ok {
				return m, err
			}
			if m, ok, err := s.rec.pop(ctx); ok {
				return m, err
			}
		}
		if err := s.poll(ctx); err != nil {
			return nil, err
		}
	}
}

// poll blocks until a socket may have input or a wake arrives, and queues
// the sockets that may.
func (s *Subscription) poll(ctx context.Context) error {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, s.interrupt)
	}
	var retry *time.Timer
	if d, ok := s.rec.nextDue(); ok {
		retry = time.AfterFunc(d, s.interrupt) // a round of recovery is due
	}
	ready, err := s.poller.wait(s.readyBuf[:0])
	if stop != nil {
		stop()
	}
	if retry != nil {
		retry.Stop()
	}
	if err != nil {
		return err
	}
	for _, i := range ready {
		s.queue(i)
	}
	s.readyBuf = ready
	return nil
}

// queue adds socket i to those the reader reads until EAGAIN.
func (s *Subscription) queue(i int) {
	if !s.queued[i] {
		s.queued[i] = true
		s.pending = append(s.pending, i)
	}
}

// handle turns frames into a message; ok is false when it must not be
// yielded (invalid and not surfaced, or a duplicate).
func (s *Subscription) handle(ctx context.Context, i int, frames [][]byte) (*Message, bool, error) {
	b := s.bus
	b.stats.received.Add(1)
	s.big = len(frames[len(frames)-1]) >= bigMessage
	ep := s.eps[i]
	if len(frames) != 2 {
		return s.reject(&Message{Name: ep.name, Endpoint: ep.addr},
			fmt.Errorf("%w: %d frames, want 2", ErrInvalidMessage, len(frames)))
	}
	r := &received{m: Message{Name: ep.name, Endpoint: ep.addr, Body: frames[1], sub: s}}
	m := &r.m
	env, err := parseEnvelopeShared(frames[1], &r.env) // frames[1] is m.Body
	if err != nil {
		return s.reject(m, err)
	}
	m.Envelope = env
	if env.Topic != string(frames[0]) {
		// fedmsg sends the topic twice: as frame 1, which the SUB filters
		// on, and signed in the body, which the application reads. A
		// message whose two differ was replayed under a misleading frame.
		return s.reject(m, fmt.Errorf("%w: topic frame %q is not the message's topic %q", ErrInvalidMessage, frames[0], env.Topic))
	}
	if s.seen != nil && env.MsgID != "" && s.seen.has(env.MsgID) {
		// A resend of a message already yielded (only valid ones are
		// remembered): its publisher still waits, so the ACK goes again
		// if one went the first time (the same signed bytes, no RSA),
		// but the application does not see the message twice. Checked
		// before validation, so a resend costs no verification either.
		b.stats.duplicates.Add(1)
		if ack := s.seen.ack(env.MsgID); ack != nil {
			if err := b.send(ctx, ack); err == nil {
				b.stats.acksSent.Add(1)
			}
		}
		return nil, false, nil
	}
	if s.validate {
		if m.Signer, err = b.validator.Validate(env); err != nil {
			if b.isClosed() {
				// Not judged: Close cut short the download of a CA or
				// CRL the verdict waited for. Not delivered either.
				return nil, true, ErrClosed
			}
			return s.reject(m, err)
		}
	}
	if s.seen != nil && env.MsgID != "" {
		s.seen.add(env.MsgID)
	}
	b.opts.hooks.messageIn(env.Topic)
	if s.rec.admit(ctx, m) {
		return nil, false, nil // dropped, or queued after what its gap recovered
	}
	s.acks.due(env)
	return m, true, nil
}

// Memory after big messages. Reading a message of n bytes allocates
// from about 2n (long strings) to about 60n (nothing but tiny values:
// each becomes an interface in a map or slice); see RELIABILITY.md. Once
// the message is handled that memory is garbage, but Go hands free memory
// back to the OS only minutes after its last collection, so one spike
// would stay in the process's RSS for as long as the bus is quiet.
const (
	bigMessage   = 1 << 20         // from this size, a message's memory is handed back
	releaseDelay = 1 * time.Second // after the last big message: a stream of them keeps its memory
)

// releaseAfterBig returns free memory to the OS releaseDelay after the
// last big message was handled, from a timer: the reader may be blocked
// in a poll by then.
func (s *Subscription) releaseAfterBig() {
	if !s.big {
		return
	}
	s.big = false
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	if s.release == nil {
		s.release = time.AfterFunc(releaseDelay, debug.FreeOSMemory)
	} else {
		s.release.Reset(releaseDelay)
	}
}

func (s *Subscription) reject(m *Message, err error) (*Message, bool, error) {
	if !s.opts.surfaceInvalid {
		s.releaseAfterBig() // nobody will hold it
	}
	reason := ReasonOf(err)
	if reason == "" {
		reason = ReasonMalformed
	}
	s.bus.stats.invalid.add(reason)
	s.bus.opts.hooks.rejected(reason)
	s.bus.log.Warn("gilmsg: invalid message", slog.String("endpoint", m.Endpoint), slog.String("reason", string(reason)), slog.Any("error", err))
	if s.opts.surfaceInvalid {
		m.invalid = err // never ACKed, whoever asks
		return m, true, err
	}
	return nil, false, nil
}

// markLost is the monitors' hook: a connection libzmq dropped for a
// protocol error (an oversized message) is not restored by libzmq; the
// reader makes it again.
func (s *Subscription) markLost(i int) { s.noteConn(&s.lost, i) }

// noteConn adds connection i to list (s.lost or s.dropped), for the reader
// to act on, and wakes the reader. Any goroutine.
func (s *Subscription) noteConn(list *[]int, i int) {
	s.lostMu.Lock()
	*list = append(*list, i)
	s.lostMu.Unlock()
	s.interrupt()
}

// takeConns empties list and returns what it held.
func (s *Subscription) takeConns(list *[]int) []int {
	s.lostMu.Lock()
	defer s.lostMu.Unlock()
	l := *list
	*list = nil
	return l
}

// reconnectLost runs in the reader, which owns the sockets.
func (s *Subscription) reconnectLost() {
	lost := s.takeConns(&s.lost)
	s.catchUpDropped()
	for _, i := range lost {
		addr := s.eps[i].addr
		s.socks[i].Disconnect(addr)
		s.queue(i) // those calls may have taken the poller's signal
		if err := s.socks[i].Connect(addr); err != nil {
			s.bus.log.Error("gilmsg: reconnect", slog.String("endpoint", addr), slog.Any("error", err))
		} else {
			s.bus.log.Warn("gilmsg: reconnected after the peer broke the protocol", slog.String("endpoint", addr),
				slog.String("usually", "a message over the maximum size"), slog.Int64("max_message_size", s.bus.opts.maxMsgSize))
		}
	}
}

func (s *Subscription) interrupt() { s.poller.Wake() }

// joinContexts returns a context that ends when either a or b does, and
// the function that releases it.
func joinContexts(a, b context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// Close closes the subscription's sockets; a blocked Next returns
// [ErrClosed]. The ACKs of the messages Next has returned (with
// WithManualAck, those given to [Message.AckAsync]) are sent
// before it returns, within 2 s (see [Subscription.Next]); those it
// gives up on are counted in [Stats].AckErrors and logged. It is safe
// to call twice and from any goroutine; a second call returns once the
// first has (Bus.Close closes its publisher only after).
func (s *Subscription) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	s.interrupt()
	if s.stopWork != nil {
		s.stopWork()
	}
	s.useMu.Lock()
	s.rec.close()
	s.closeSockets()
	s.acks.close() // the reader is out: nothing more is queued
	s.addMu.Lock()
	for _, a := range s.adds {
		close(a.mons) // ErrClosed for addEndpoints
	}
	s.adds = nil
	s.addMu.Unlock()
	s.useMu.Unlock()
	s.releaseMu.Lock()
	if s.release != nil {
		s.release.Stop()
	}
	s.releaseMu.Unlock()
	s.bus.removeSub(s)
	return nil
}

func (s *Subscription) closeSockets() {
	// Stop each socket's monitor before closing our end of it: libzmq's
	// monitor would block its I/O thread on a peerless PAIR at the next
	// event, and the whole context would stop receiving.
	for i := range s.mons {
		s.socks[i].Monitor("", 0)
	}
	if s.monGroup != nil {
		s.monGroup.Close()
	}
	s.mons = nil
	s.poller.close()
	for _, sock := range s.socks {
		// A SUB has nothing worth lingering for: only its subscription
		// may be queued, for a peer that is gone.
		sock.SetLinger(0)
		sock.Close()
	}
	s.socks, s.handles = nil, nil
}

// Messages iterates over the subscription until ctx ends or it closes
// (then the loop just ends) or the loop breaks (the subscription stays
// open). Other errors are yielded with a nil message or, for surfaced
// invalid messages, with the message.
func (s *Subscription) Messages(ctx context.Context) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		for {
			m, err := s.Next(ctx)
			if err != nil && (errors.Is(err, ErrClosed) || ctx.Err() != nil) {
				return
			}
			if !yield(m, err) {
				return
			}
		}
	}
}

// Tail subscribes to topicPrefix and iterates over the messages, as
// fedmsg.tail_messages does. The loop ends when ctx ends or the bus closes;
// breaking out of it, or its end, closes the subscription's sockets. A
// failure to subscribe (other than those two) is yielded once, with a nil
// message. Valid gilmsg messages are ACKed as they are yielded unless
// [WithoutAck] or [WithManualAck] is given; with WithManualAck, call [Message.Ack]
// after handling each one.
func (b *Bus) Tail(ctx context.Context, topicPrefix string, opts ...SubscribeOption) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		s, err := b.Subscribe(ctx, topicPrefix, opts...)
		if err != nil {
			// Closing and cancelling end the loop quietly, even this early.
			if !errors.Is(err, ErrClosed) && ctx.Err() == nil {
				yield(nil, err)
			}
			return
		}
		defer s.Close()
		s.Messages(ctx)(yield)
	}
}

// isAckTopic reports whether a topic is gilmsg's ACK topic, in any
// environment: ACKs are never ACKed.
func isAckTopic(topic string) bool { return strings.HasSuffix(topic, ".gilmsg.ack") }

// idSet remembers the last n msg_ids, forgetting the oldest first, and
// the ACK sent for each of the most recent ackKeep (a publisher resends
// for its ACK timeout only; older ACKs would be memory for nothing). It
// holds at most dedupeBytes of msg_ids (plus the newest): a publisher
// picks their length, up to the message size, and 4096 of 8 MiB would be
// 32 GiB. It is safe for concurrent use: Message.Ack may run on any
// goroutine.
type idSet struct {
	mu          sync.Mutex
	ring        []string
	head, count int            // the oldest id's index in ring, and how many it holds
	bytes       int            // of the ids held
	pos         map[string]int // msg_id → its index in ring
	acks        []*outgoing    // by ring index
}

const (
	ackKeep = 256
	// dedupeBytes bounds the msg_ids a subscription remembers: some
	// 400 000 of the usual 41 bytes, far more than the count allows, but
	// only 128 of 128 kB.
	dedupeBytes = 16 << 20
)

func newIDSet(n int) *idSet {
	return &idSet{ring: make([]string, n), pos: make(map[string]int, n), acks: make([]*outgoing, n)}
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pos[id]
	return ok
}

// add records id and reports whether it was new.
func (s *idSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pos[id]; ok {
		return false
	}
	n := len(s.ring)
	for s.count > 0 && (s.count == n || s.bytes+len(id) > dedupeBytes) {
		old := s.ring[s.head]
		delete(s.pos, old)
		s.bytes -= len(old)
		s.ring[s.head], s.acks[s.head] = "", nil
		s.head = (s.head + 1) % n
		s.count--
	}
	// A decoded string shares the memory of its whole body: keep a copy,
	// not 4096 bodies.
	id = strings.Clone(id)
	i := (s.head + s.count) % n
	s.ring[i] = id
	s.pos[id] = i
	s.acks[i] = nil
	s.bytes += len(id)
	s.count++
	if s.count > ackKeep {
		s.acks[(i-ackKeep+n)%n] = nil
	}
	return true
}

func (s *idSet) setAck(id string, ack *outgoing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.pos[id]; ok {
		s.acks[i] = ack
	}
}

func (s *idSet) ack(id string) *outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.pos[id]; ok {
		return s.acks[i]
	}
	return nil
}
