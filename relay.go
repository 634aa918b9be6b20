package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/zsock"
	zmq "github.com/pebbe/zmq4"
)

// relayBatch bounds how many messages are forwarded between two looks at
// Close and ctx, so that they are noticed under a flood.
const relayBatch = 256

// Relay is fedmsg-relay: active publishers connect to its SUB socket at
// relay_inbound, and it republishes every message, unchanged, from its PUB
// socket at relay_outbound, where subscribers find it. Frames are
// forwarded byte for byte, so signatures stay valid, and so is a message
// that is not fedmsg's two frames (counted in [RelayStats.NotTwoFrames]).
//
// Like any PUB socket, the outbound side drops messages for a subscriber
// that is past its queue, high_water_mark ([WithRelayQueue] sets it). When
// that is 0 (fedmsg's "no limit"), the queue is [DefaultFanoutBytes] of
// messages of max_message_size, the most one message on the inbound side
// may be, and a full subscriber makes the relay wait for room rather than
// lose a burst, up to zmq_send_wait ([Config.ZMQSendWait]). The socket is
// an XPUB, which subscribers cannot tell from a PUB, for that.
//
// Run, Close, Stats and the endpoint methods are safe from any goroutine.
type Relay struct {
	log      *slog.Logger
	hooks    *Hooks
	zctx     *zmq.Context
	inbound  string
	outbound string
	sources  int     // addresses sub connects to ([WithRelaySources])
	signer   *Signer // signs what comes unsigned: [WithRelaySigner]

	// Holding run owns sub and pub: Run holds it while it forwards, Close
	// takes it for good.
	run chan struct{}
	sub *zmq.Socket
	pub *zmq.Socket
	// subH and pubH are their socketHandles: forwardOne moves a message
	// in one cgo call through fwd (the frame-by-frame path where either
	// is nil, or for the hooks, which need the topic).
	subH, pubH unsafe.Pointer
	fwd        forwarder
	// fan sends on pub, waiting for a full subscriber (nil: pub drops
	// for it); see newXPub. pub is an XPUB for that.
	fan *zsock.Fanout
	// poller waits for sub in Go's netpoller; its Wake makes Run look at
	// closing and ctx.
	poller *readyPoller
	// mon watches a sub that connects ([WithRelaySources]; nil for one
	// that binds): libzmq never restores a connection it dropped for
	// a message over max_message_size, so Run does, from lost.
	mon    *connMonitor
	lostMu sync.Mutex
	lost   []string

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	forwarded    atomic.Uint64
	notTwoFrames atomic.Uint64
	signed       atomic.Uint64
}

// RelayStats counts what a [Relay] has done.
type RelayStats struct {
	// Forwarded is every message forwarded, whatever its shape.
	Forwarded uint64
	// NotTwoFrames is how many of those did not have fedmsg's two frames.
	NotTwoFrames uint64
	// Signed is how many it signed ([WithRelaySigner]).
	Signed uint64
}

// RelayOption configures a [Relay].
type RelayOption func(*relayOptions)

type relayOptions struct {
	logger *slog.Logger
	hooks  *Hooks
	signer *Signer
	// subscribe: sub connects to the addresses of sources instead of
	// binding relay_inbound ([WithRelaySources]).
	subscribe bool
	sources   map[string][]string
	outName   string   // [WithRelayOutbound]; "" for relay_outbound
	outAddrs  []string // with outName
	queue     int      // [WithRelayQueue]; 0 for queueCap
	queueCap  int      // [WithRelayQueueCap]; 0 for fanoutHWM
	errs      []error
}

// WithRelayLogger logs the relay's start, stop and oddities through l.
// Default: nothing is logged.
func WithRelayLogger(l *slog.Logger) RelayOption {
	return func(o *relayOptions) { o.logger = l }
}

// WithRelayHooks reports the relay's (or gateway's) forwarded messages to
// h. Default: none.
func WithRelayHooks(h *Hooks) RelayOption { return func(o *relayOptions) { o.hooks = h } }

// WithRelaySources makes the relay subscribe to every address of
// endpoints (the shape of [Config.Endpoints]: a name's addresses), as a
// subscriber does, instead of binding relay_inbound for active publishers
// to connect to: fedmsg-gateway's way of collecting a whole bus. A
// connection libzmq drops for good, as it does after a message over
// max_message_size, is made again. [Relay.InboundEndpoint] is then "".
// Default: the relay binds relay_inbound.
func WithRelaySources(endpoints map[string][]string) RelayOption {
	return func(o *relayOptions) { o.subscribe, o.sources = true, endpoints }
}

// WithRelayOutbound binds the relay's PUB socket at the first bindable of
// addrs instead of at cfg.Endpoints["relay_outbound"]; name is what a
// [*NoEndpointError] calls them. Default: relay_outbound.
func WithRelayOutbound(name string, addrs ...string) RelayOption {
	return func(o *relayOptions) {
		if name == "" || len(addrs) == 0 {
			o.errs = append(o.errs, fmt.Errorf("%w: WithRelayOutbound(%q, %q): want a name and at least one address", ErrInvalidOption, name, addrs))
			return
		}
		o.outName, o.outAddrs = name, addrs
	}
}

// WithRelayQueue bounds what the relay's PUB socket queues for each
// subscriber to n messages (ZMQ_SNDHWM); past it, that subscriber loses
// messages and the others do not. Default: high_water_mark, or when that
// is 0 a cap that waits for a full subscriber ([WithRelayQueueCap]) of
// [DefaultFanoutBytes] of messages of max_message_size. Below 1,
// [NewRelay] fails with [ErrInvalidOption]: 0 would mean no bound. So it
// does past [math.MaxInt32], which libzmq's C int cannot hold.
func WithRelayQueue(n int) RelayOption {
	return func(o *relayOptions) {
		if n < 1 || n > math.MaxInt32 {
			o.errs = append(o.errs, fmt.Errorf("%w: WithRelayQueue(%d): want 1 to %d messages", ErrInvalidOption, n, math.MaxInt32))
			return
		}
		o.queue = n
	}
}

// WithRelayQueueCap bounds what the relay's PUB socket queues for each
// subscriber to n messages too, but as a bound on memory rather than a
// policy: a full subscriber makes the relay wait for room, up to
// zmq_send_wait, so a burst to a slow but live subscriber is not dropped;
// when the wait runs out, the relay sends that message past the full ones
// (see [Config.ZMQSendWait]). [WithRelayQueue] wins over it. Limits as for
// WithRelayQueue.
func WithRelayQueueCap(n int) RelayOption {
	return func(o *relayOptions) {
		if n < 1 || n > math.MaxInt32 {
			o.errs = append(o.errs, fmt.Errorf("%w: WithRelayQueueCap(%d): want 1 to %d messages", ErrInvalidOption, n, math.MaxInt32))
			return
		}
		o.queueCap = n
	}
}

// NewRelay binds the relay's two sockets: SUB at the first bindable
// address of cfg.RelayInbound (or connected to [WithRelaySources]),
// subscribed to everything, and PUB at the first bindable address of
// cfg.Endpoints["relay_outbound"] (or [WithRelayOutbound]). It returns a
// [*NoEndpointError] when either has no free address. Nothing is
// forwarded until [Relay.Run].
func NewRelay(cfg *Config, opts ...RelayOption) (*Relay, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: NewRelay needs a config", ErrConfig)
	}
	o := relayOptions{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.errs) > 0 {
		return nil, errors.Join(o.errs...)
	}
	zctx, err := newContext(cfg.IOThreads)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		log:     o.logger,
		hooks:   o.hooks,
		zctx:    zctx,
		signer:  o.signer,
		run:     make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
	if r.poller, err = newReadyPoller(); err != nil {
		return nil, errors.Join(err, closeAll(zctx))
	}
	err = r.open(cfg, &o)
	if err == nil {
		r.subH, r.pubH = socketHandle(r.sub), socketHandle(r.pub)
		err = errors.Join(r.poller.add(r.sub, relaySub), r.poller.add(r.pub, relayPub))
	}
	if err != nil {
		r.stopMonitor()
		r.poller.close()
		return nil, errors.Join(err, closeAll(zctx, r.sub, r.pub))
	}
	return r, nil
}

func (r *Relay) open(cfg *Config, o *relayOptions) error {
	so := sockOptsFromConfig(cfg)
	var err error
	if r.sub, err = newSocket(r.zctx, zmq.SUB, so); err != nil {
		return err
	}
	// Subscribed before binding so every connection gets it at handshake.
	if err := r.sub.SetSubscribe(""); err != nil {
		return fmt.Errorf("relay subscribe: %w", err)
	}
	if o.subscribe {
		err = r.connectSources(o.sources)
	} else {
		r.inbound, err = bindFirst(r.sub, "relay_inbound", cfg.RelayInbound)
	}
	if err != nil {
		return err
	}
	so.SendHWM = o.queue
	if r.pub, r.fan, err = newXPub(r.zctx, so, o.queueCap, r.log, "relay outbound"); err != nil {
		return err
	}
	name, addrs := "relay_outbound", cfg.Endpoints["relay_outbound"]
	if o.outName != "" {
		name, addrs = o.outName, o.outAddrs
	}
	r.outbound, err = bindFirst(r.pub, name, addrs)
	return err
}

// connectSources connects sub to every address of sources, watching each
// connection so that Run can restore one libzmq gives up on.
func (r *Relay) connectSources(sources map[string][]string) error {
	var err error
	if r.mon, err = newConnMonitor(r.zctx, r.sub, withLostHook(r.markLost)); err != nil {
		return err
	}
	for _, name := range sortedKeys(sources) {
		for _, addr := range sources[name] {
			if err := r.sub.Connect(addr); err != nil {
				return endpointError("connect", name, addr, err)
			}
			r.sources++
		}
	}
	return nil
}

// InboundEndpoint returns the address the SUB socket is bound at, as zmq
// reports it (the real port when the config said "*"); "" when it
// connects to [WithRelaySources] instead.
func (r *Relay) InboundEndpoint() string { return r.inbound }

// OutboundEndpoint returns the address the PUB socket is bound at, as zmq
// reports it.
func (r *Relay) OutboundEndpoint() string { return r.outbound }

// Stats returns the relay's counters so far.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Forwarded: r.forwarded.Load(), NotTwoFrames: r.notTwoFrames.Load(), Signed: r.signed.Load()}
}

// Run forwards messages until ctx ends, returning ctx.Err(), or until the
// relay is closed, returning [ErrClosed]. It may be called again after it
// returns; a call made while another Run is forwarding waits for it to
// return first (or for its own ctx, or Close).
func (r *Relay) Run(ctx context.Context) error {
	select {
	case <-r.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case r.run <- struct{}{}:
	}
	defer func() { <-r.run }()
	select {
	case <-r.closing: // Close came first; it is waiting for us to let go
		return ErrClosed
	default:
	}

	// A Wake that comes after Run returns only cuts the next Run's first
	// wait short; after Close it does nothing.
	stop := context.AfterFunc(ctx, r.poller.Wake)
	defer stop()

	inbound := slog.String("inbound", r.inbound)
	if r.mon != nil {
		inbound = slog.Int("sources", r.sources)
	}
	r.log.Info("gilmsg: relay forwarding", inbound, slog.String("outbound", r.outbound))
	err := r.forwardLoop(ctx)
	r.log.Info("gilmsg: relay stopped", slog.Uint64("forwarded", r.forwarded.Load()), slog.Any("reason", err))
	return err
}

// forwardLoop keeps the poller's rules (see readyPoller): sub is read
// until EAGAIN before each wait, and once before the first, since a Run
// that stopped mid-batch (or a constructor's zmq calls) may have taken the
// signal for what is queued.
func (r *Relay) forwardLoop(ctx context.Context) error {
	readable := true
	var ready []int
	for {
		// After the wait, as Wake requires.
		select {
		case <-r.closing:
			return ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.reconnectLost() {
			readable = true // those calls may have taken the poller's signal
		}
		// Also re-arms pub's signal, which sends may have taken.
		if err := r.dropSubscriptions(); err != nil {
			return err
		}
		if !readable {
			var err error
			if ready, err = r.poller.wait(ready[:0]); err != nil {
				return fmt.Errorf("relay wait: %w", err)
			}
			readable = slices.Contains(ready, relaySub) // none: a Wake
			continue
		}
		for range relayBatch {
			ok, err := r.forwardOne()
			if err != nil {
				return err
			}
			if !ok {
				readable = false
				break
			}
		}
	}
}

// The poller's ids for the relay's sockets.
const (
	relaySub = iota
	relayPub // an XPUB: subscriptions arrive on it
)

// dropSubscriptions reads what subscribers sent pub until none is left:
// the relay has no use for it, but unread it would queue without bound.
func (r *Relay) dropSubscriptions() error {
	for {
		_, err := r.pub.RecvBytes(zmq.DONTWAIT)
		if isEAGAIN(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("relay reading subscriptions: %w", err)
		}
	}
}

// send sends frames on pub, through fan.
func (r *Relay) send(frames [][]byte) error {
	return r.fan.Send(func(block bool) error {
		var err error
		if block {
			_, err = r.pub.SendMessage(frames)
		} else {
			_, err = r.pub.SendMessageDontwait(frames)
		}
		return err
	})
}

// forwardOne moves one message from sub to pub without waiting for one to
// arrive; false means none was queued.
func (r *Relay) forwardOne() (bool, error) {
	if r.signer != nil {
		return r.signOne()
	}
	if r.subH != nil && r.pubH != nil && r.hooks == nil {
		frames, err := r.fwd.forward(r.subH, r.pubH, r.fan)
		if err != nil {
			var fe *forwardError
			if errors.As(err, &fe) && !fe.send && frames == 0 && isEAGAIN(fe.err) {
				return false, nil
			}
			return false, fmt.Errorf("relay %w", err)
		}
		r.counted(frames)
		return true, nil
	}
	frames, err := r.sub.RecvMessageBytes(zmq.DONTWAIT)
	if err != nil {
		if isEAGAIN(err) {
			return false, nil
		}
		return false, fmt.Errorf("relay receive: %w", err)
	}
	if r.hooks != nil {
		r.hooks.messageIn(string(frames[0]))
	}
	if err := r.send(frames); err != nil {
		return false, fmt.Errorf("relay send: %w", err)
	}
	if r.hooks != nil {
		r.hooks.messageOut(string(frames[0]))
	}
	r.counted(len(frames))
	return true, nil
}

// counted counts a forwarded message of n frames.
func (r *Relay) counted(n int) {
	r.forwarded.Add(1)
	if n != 2 {
		r.notTwoFrames.Add(1)
		r.log.Debug("gilmsg: relay forwarded a message that is not two frames", slog.Int("frames", n))
	}
}

// markLost runs on the monitor's goroutine: Run reconnects endpoint.
func (r *Relay) markLost(endpoint string) {
	r.lostMu.Lock()
	r.lost = append(r.lost, endpoint)
	r.lostMu.Unlock()
	r.poller.Wake()
}

// reconnectLost connects sub again to the endpoints whose connection
// libzmq dropped, and reports whether there were any.
func (r *Relay) reconnectLost() bool {
	r.lostMu.Lock()
	lost := r.lost
	r.lost = nil
	r.lostMu.Unlock()
	for _, ep := range lost {
		r.sub.Disconnect(ep)
		if err := r.sub.Connect(ep); err != nil {
			r.log.Error("gilmsg: reconnect", slog.String("endpoint", ep), slog.Any("error", err))
			continue
		}
		r.log.Warn("gilmsg: reconnected after the peer broke the protocol", slog.String("endpoint", ep),
			slog.String("usually", "a message over max_message_size"))
	}
	return len(lost) > 0
}

// stopMonitor stops sub's monitor, before sub closes: libzmq's monitor
// would block its I/O thread on a peerless PAIR.
func (r *Relay) stopMonitor() {
	if r.mon != nil {
		r.sub.Monitor("", 0)
		r.mon.Close()
	}
}

// Close stops a running [Relay.Run] (which returns [ErrClosed]), then
// closes the sockets, giving unsent messages up to zmq_linger to leave.
// It is safe to call twice and from any goroutine.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		close(r.closing)
		r.fan.Stop() // a send waiting for a stuck subscriber goes past it
		r.poller.Wake()
		r.run <- struct{}{} // wait for Run to let go of the sockets; never released
		r.stopMonitor()
		r.poller.close()
		r.closeErr = closeAll(r.zctx, r.sub, r.pub)
	})
	return r.closeErr
}
