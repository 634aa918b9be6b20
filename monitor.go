package gilmsg

import (
	"context"
	"fmt"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// monitorEvents is what a connMonitor listens to. MONITOR_STOPPED has to be
// in the mask for libzmq to send it.
const monitorEvents = zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
	zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
	zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED |
	zmq.EVENT_CONNECT_RETRIED

// lostGrace is how long a dropped connection of a connecting socket may go
// without libzmq scheduling its reconnect (EVENT_CONNECT_RETRIED, emitted
// right after an ordinary disconnect) before it counts as lost for good, as
// after a protocol error. An ordinary disconnect must not be "repaired":
// Disconnect then discards what the pipe still holds, and libzmq can abort
// on it.
const lostGrace = 500 * time.Millisecond

// peerCount is what a connMonitor knows of one endpoint. libzmq reports a
// connecting socket's events under the address given to Connect (one
// connection at a time), a bound socket's under its bound address (all its
// peers together), and only ACCEPTED/CONNECTED/DISCONNECTED carry the file
// descriptor, so connections are counted, not identified: each one ends in
// exactly one DISCONNECTED, preceded by either HANDSHAKE_SUCCEEDED or a
// HANDSHAKE_FAILED_* event.
type peerCount struct {
	live    int  // handshaken and not yet disconnected
	failing int  // handshake failed, DISCONNECTED still to come
	connect bool // we connected to it (rather than accepted from it)
	drops   int  // bumped by each drop and each reconnect attempt, to match them
}

// connMonitor counts a socket's live connections, those that completed
// the ZMTP handshake, from libzmq's socket monitor, read through an inproc
// PAIR socket by the goroutine of its [monitorGroup].
//
// Counts are exact for a connecting socket. For a bound socket they can
// run one high for as long as a failed handshake overlaps the departure of
// a handshaken peer (the two DISCONNECTED events cannot be told apart);
// the count settles when the failed one's DISCONNECTED arrives.
//
// Its methods are safe from any goroutine. It must be made by the owner of
// the monitored socket before that socket binds or connects (events that
// precede it are not seen), and closed before the context is terminated.
type connMonitor struct {
	group   *monitorGroup
	own     bool          // the group is this monitor's alone: Close closes it
	id      int           // its id in the group's poller; the group's goroutine's
	pair    *zmq.Socket   // owned by the group's goroutine once added
	done    chan struct{} // closed when the group has closed pair
	lost    func(endpoint string)
	dropped func()

	mu      sync.Mutex
	peers   map[string]*peerCount
	live    int
	stopped error         // why monitoring ended; nil while it runs
	changed chan struct{} // closed and replaced whenever live or stopped changes
}

// monitorGroup reads the monitors of many sockets (a subscription's, one
// per endpoint) on one goroutine, which waits in Go's netpoller
// ([readyPoller]): an endpoint costs two inproc sockets, and no goroutine
// or OS thread of its own.
type monitorGroup struct {
	poll *readyPoller
	done chan struct{} // closed when the goroutine has exited

	mu       sync.Mutex
	adds     []*connMonitor // handed to the goroutine, which adds them
	removes  []*connMonitor
	closing  bool
	members  map[int]*connMonitor // by poller id; the goroutine's
	nextID   int
	finished bool // the goroutine has exited: nothing more is added
}

func newMonitorGroup() (*monitorGroup, error) {
	poll, err := newReadyPoller()
	if err != nil {
		return nil, err
	}
	g := &monitorGroup{poll: poll, done: make(chan struct{}), members: make(map[int]*connMonitor)}
	go g.run()
	return g, nil
}

// monitorOption configures a connMonitor.
type monitorOption func(*connMonitor)

// withLostHook calls fn with the endpoint of a connecting socket whose
// handshaken connection has dropped, so that its owner can Disconnect and
// Connect it again: libzmq does not reconnect after a protocol error such as
// an oversized message (see the notes at the top of this file). fn runs on
// a timer's goroutine and must not block; queue the endpoint and wake
// the socket's owner. Handshakes that never succeeded do not call fn, so a
// non-ZMTP listener cannot cause a reconnect storm.
func withLostHook(fn func(endpoint string)) monitorOption {
	return func(m *connMonitor) { m.lost = fn }
}

// withDropHook calls fn, on the monitor's goroutine (it must not block),
// each time a handshaken connection of a connecting socket drops, whether
// or not libzmq makes it again.
func withDropHook(fn func()) monitorOption {
	return func(m *connMonitor) { m.dropped = fn }
}

// newConnMonitor starts monitoring s, on a group of its own. Call it from
// s's owner goroutine (it configures s) before s binds or connects.
func newConnMonitor(zctx *zmq.Context, s *zmq.Socket, opts ...monitorOption) (*connMonitor, error) {
	g, err := newMonitorGroup()
	if err != nil {
		return nil, err
	}
	m, err := g.add(zctx, s, opts...)
	if err != nil {
		g.Close()
		return nil, err
	}
	m.own = true
	return m, nil
}

// add starts monitoring s in the group. Call it from s's owner goroutine
// before s binds or connects.
func (g *monitorGroup) add(zctx *zmq.Context, s *zmq.Socket, opts ...monitorOption) (*connMonitor, error) {
	addr := inprocAddr("monitor")
	if err := s.Monitor(addr, monitorEvents); err != nil {
		return nil, fmt.Errorf("socket monitor: %w", err)
	}
	fail := func(err error, socks ...*zmq.Socket) (*connMonitor, error) {
		s.Monitor("", 0) // stop: nobody will read the events
		for _, sk := range socks {
			sk.Close()
		}
		return nil, err
	}
	pair, err := zctx.NewSocket(zmq.PAIR)
	if err != nil {
		return fail(fmt.Errorf("monitor socket: %w", err))
	}
	pair.SetLinger(0)
	// The monitor drops events it cannot queue; a lost DISCONNECTED would
	// skew the count forever, so our side of the pipe has no limit.
	pair.SetRcvhwm(0)
	if err := pair.Connect(addr); err != nil {
		return fail(fmt.Errorf("monitor connect: %w", err), pair)
	}
	m := &connMonitor{
		group:   g,
		pair:    pair,
		done:    make(chan struct{}),
		peers:   make(map[string]*peerCount),
		changed: make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	g.mu.Lock()
	if g.finished || g.closing {
		g.mu.Unlock()
		return fail(ErrClosed, pair)
	}
	// The mutex is the happens-before edge that hands pair over.
	g.adds = append(g.adds, m)
	g.mu.Unlock()
	g.poll.Wake()
	return m, nil
}

func (g *monitorGroup) run() {
	defer close(g.done)
	var ready []int
	var err error
	for {
		g.mu.Lock()
		adds, removes, closing := g.adds, g.removes, g.closing
		g.adds, g.removes = nil, nil
		g.mu.Unlock()
		for _, m := range adds {
			id := g.nextID
			g.nextID++
			if err := g.poll.add(m.pair, id); err != nil {
				g.stop(m, err)
				continue
			}
			m.id = id
			g.members[id] = m
			g.read(id, m) // events queued before it was added signal nothing
		}
		for _, m := range removes {
			if g.members[m.id] == m {
				g.stopID(m.id, ErrClosed)
			}
		}
		if closing || err != nil {
			break
		}
		if ready, err = g.poll.wait(ready[:0]); err != nil {
			err = fmt.Errorf("monitor: %w", err)
			continue // to stop everyone
		}
		for _, id := range ready {
			if m := g.members[id]; m != nil {
				g.read(id, m)
			}
		}
	}
	if err == nil {
		err = ErrClosed
	}
	g.mu.Lock()
	g.finished = true
	leftover := g.adds
	g.adds = nil
	g.mu.Unlock()
	for id := range g.members {
		g.stopID(id, err)
	}
	for _, m := range leftover {
		g.stop(m, err)
	}
	g.poll.close()
}

// read applies every event queued for m, and stops m when its socket has
// closed or its pipe failed.
func (g *monitorGroup) read(id int, m *connMonitor) {
	for {
		ev, addr, _, err := m.pair.RecvEvent(zmq.DONTWAIT)
		if isEAGAIN(err) {
			return
		}
		if err != nil {
			g.stopID(id, fmt.Errorf("monitor event: %w", err))
			return
		}
		if ev == zmq.EVENT_MONITOR_STOPPED { // the socket was closed
			g.stopID(id, ErrClosed)
			return
		}
		m.apply(ev, addr)
	}
}

func (g *monitorGroup) stopID(id int, err error) {
	m := g.members[id]
	delete(g.members, id)
	g.poll.remove(m.pair)
	g.stop(m, err)
}

// stop closes m's PAIR and releases its waiters with err.
func (g *monitorGroup) stop(m *connMonitor, err error) {
	m.pair.Close()
	m.mu.Lock()
	m.stopped = err
	m.notifyLocked()
	m.mu.Unlock()
	close(m.done)
}

// Close stops every monitor of the group and its goroutine. Safe twice.
// Stop each monitored socket's monitor first (Socket.Monitor("", 0)):
// libzmq's monitor would otherwise block its I/O thread on a peerless PAIR
// at the next event, and the whole context would stop receiving.
func (g *monitorGroup) Close() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.poll.Wake()
	<-g.done
}

func (m *connMonitor) apply(ev zmq.Event, addr string) {
	lost := false
	m.mu.Lock()
	p := m.peers[addr]
	if p == nil {
		p = &peerCount{}
		m.peers[addr] = p
	}
	switch ev {
	case zmq.EVENT_CONNECT_RETRIED:
		p.drops++ // libzmq will reconnect by itself
	case zmq.EVENT_CONNECTED:
		p.connect = true
		p.drops++
	case zmq.EVENT_HANDSHAKE_SUCCEEDED:
		p.live++
		m.live++
		m.notifyLocked()
	case zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		p.failing++
	case zmq.EVENT_DISCONNECTED:
		switch {
		case p.failing > 0:
			p.failing--
		case p.live > 0:
			p.live--
			m.live--
			m.notifyLocked()
			lost = p.connect
		}
	}
	var drop int
	if lost {
		p.drops++
		drop = p.drops
	}
	m.mu.Unlock()
	if lost && m.dropped != nil {
		m.dropped()
	}
	if lost && m.lost != nil {
		time.AfterFunc(lostGrace, func() {
			m.mu.Lock()
			still := p.drops == drop && m.stopped == nil
			m.mu.Unlock()
			if still {
				m.lost(addr)
			}
		})
	}
}

func (m *connMonitor) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Connected returns the number of live handshaken connections.
func (m *connMonitor) Connected() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

// Endpoints returns the live connection count of each endpoint that has
// any (see [peerCount] for what the keys are).
func (m *connMonitor) Endpoints() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int)
	for addr, p := range m.peers {
		if p.live > 0 {
			out[addr] = p.live
		}
	}
	return out
}

// WaitConnected returns nil as soon as at least n connections are live,
// ctx's error (wrapped) when it ends first, or [ErrClosed] once the monitor
// or its socket is closed. For what "live" promises about subscriptions,
// see the notes at the top of this file.
func (m *connMonitor) WaitConnected(ctx context.Context, n int) error {
	for {
		m.mu.Lock()
		live, stopped, changed := m.live, m.stopped, m.changed
		m.mu.Unlock()
		if stopped != nil {
			return stopped
		}
		if live >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d connections up: %w", live, n, ctx.Err())
		}
	}
}

// Close stops the monitor and closes its PAIR, releasing WaitConnected
// with [ErrClosed]. Safe twice, in either order with the monitored
// socket's Close.
func (m *connMonitor) Close() error {
	if m.own {
		m.group.Close()
		return nil
	}
	g := m.group
	g.mu.Lock()
	if !g.finished {
		g.removes = append(g.removes, m)
	}
	g.mu.Unlock()
	g.poll.Wake()
	<-m.done
	return nil
}
