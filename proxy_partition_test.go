package gilmsg

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A partition made in user space, for machines where the netns tests
// cannot run: every connection goes through a TCP proxy that can stop
// forwarding one direction. What it stops stays in the kernel's buffers and
// arrives once the cut heals, as TCP's retransmission delivers it across a
// real partition.
func TestPartitionByProxy(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	consumer := n.start(c1)
	toPub := newTCPProxy(t, pub.Endpoint())       // the consumer's SUB → the publisher's PUB: messages
	toCons := newTCPProxy(t, consumer.Endpoint()) // the publisher's ACK SUB → the consumer's PUB: ACKs
	consumer.cfg.Endpoints[pubCN] = []string{toPub.endpoint()}
	pub.cfg.Endpoints[c1] = []string{toCons.endpoint()}
	var cs consumerSet
	cs.run(t, c1, consumer)
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	exactlyOnce := func(t *testing.T, id string) {
		t.Helper()
		marker, err := pub.Publish(ctxT(t), "marker", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the marker", func() bool { return cs.count(c1, marker.MsgID) == 1 })
		if c := cs.count(c1, id); c != 1 {
			t.Fatalf("the application saw %s %d times", id, c)
		}
	}
	healthy := func(t *testing.T) {
		t.Helper()
		r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
		if err != nil {
			t.Fatalf("with the link whole: %v", err)
		}
		exactlyOnce(t, r.MsgID)
	}
	healthy(t)

	t.Run("ACK path cut", func(t *testing.T) {
		matched, late := pub.Stats().AcksMatched, pub.Stats().AcksRejected[ackRejectUnknownID]
		toCons.cut(toClient, true)
		_, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "acks"}, WithRecipients(c1), WithAckTimeout(time.Second))
		var te *AckTimeoutError
		if !errors.As(err, &te) || !slices.Equal(te.Missing, []string{c1}) {
			t.Fatalf("err = %v, want a timeout naming %s", err, c1)
		}
		waitFor(t, "the consumer to have it (a false negative)", func() bool { return cs.count(c1, te.MsgID) == 1 })
		toCons.cut(toClient, false)
		waitFor(t, "the held ACKs", func() bool { return pub.Stats().AcksRejected[ackRejectUnknownID] > late })
		if m := pub.Stats().AcksMatched; m != matched {
			t.Fatalf("a late ACK counted: %d matched, %d before", m, matched)
		}
		healthy(t)
	})

	t.Run("message path cut", func(t *testing.T) {
		toPub.cut(toClient, true)
		// Long enough for fallback resends to be held behind the cut.
		_, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "messages"}, WithRecipients(c1), WithAckTimeout(3*time.Second))
		var te *AckTimeoutError
		if !errors.As(err, &te) || !slices.Equal(te.Missing, []string{c1}) {
			t.Fatalf("err = %v, want a timeout naming %s", err, c1)
		}
		if c := cs.count(c1, te.MsgID); c != 0 {
			t.Fatalf("seen %d times through the cut", c)
		}
		dups := consumer.Stats().Duplicates
		toPub.cut(toClient, false)
		exactlyOnce(t, te.MsgID)
		if consumer.Stats().Duplicates == dups {
			t.Error("the held resends were not dropped as duplicates")
		}
		healthy(t)
	})

	t.Run("both paths cut, shorter than the timeout", func(t *testing.T) {
		resends := pub.Stats().Resends
		for _, p := range []*tcpProxy{toPub, toCons} {
			p.cut(toClient, true)
			p.cut(toTarget, true)
		}
		type result struct {
			r   *Receipt
			err error
		}
		res := make(chan result, 1)
		go func() {
			r, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "both"}, WithRecipients(c1), WithAckTimeout(20*time.Second))
			res <- result{r, err}
		}()
		// About a second of partition: the fallback resend, which comes
		// after zmq_reconnect_ivl_max, has gone into it.
		waitFor(t, "a resend during the partition", func() bool { return pub.Stats().Resends >= resends+1 })
		for _, p := range []*tcpProxy{toPub, toCons} {
			p.cut(toClient, false)
			p.cut(toTarget, false)
		}
		got := <-res
		if got.err != nil {
			t.Fatalf("healed within the timeout, yet: %v", got.err)
		}
		exactlyOnce(t, got.r.MsgID)
	})
}

// Directions through a tcpProxy.
const (
	toTarget = iota // what the connecting side sends (a SUB's subscriptions)
	toClient        // what the bound side sends back (a PUB's messages)
)

// tcpProxy forwards connections from its own port to a target, and can
// hold either direction: bytes read while a direction is cut wait, unsent,
// until it heals. It can also stall the connections it has (stall): they
// stay open and forward nothing, not even a close, while new ones work.
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	held    [2]bool
	nconns  int // connections accepted so far
	stalled int // connections accepted before this one are stalled
	closed  bool
	changed chan struct{} // closed and replaced at every change
	conns   []net.Conn
}

// newTCPProxy listens on 127.0.0.1 and forwards to target, a tcp://
// endpoint; it is closed when the test ends.
func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: strings.TrimPrefix(target, "tcp://"), changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) endpoint() string { return "tcp://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns = append(p.conns, client, server)
		conn := p.nconns
		p.nconns++
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(server, client, toTarget, conn)
		go p.pipe(client, server, toClient, conn)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn, dir, conn int) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		// A close waits for the direction to heal too, as a FIN would.
		if !p.open(dir, conn) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// open waits until dir of connection conn is not cut or stalled; false
// when the proxy closed.
func (p *tcpProxy) open(dir, conn int) bool {
	for {
		p.mu.Lock()
		closed, held, changed := p.closed, p.held[dir] || conn < p.stalled, p.changed
		p.mu.Unlock()
		if closed {
			return false
		}
		if !held {
			return true
		}
		<-changed
	}
}

func (p *tcpProxy) cut(dir int, on bool) {
	p.mu.Lock()
	p.held[dir] = on
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// stall makes every connection made so far forward nothing more, in
// either direction, and never close: a stuck proxy or NAT.
func (p *tcpProxy) stall() {
	p.mu.Lock()
	p.stalled = p.nconns
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// A link that stays open but carries nothing (a stuck proxy) is found dead
// by ZMTP heartbeats and made again: messages flow again, without any
// help from TCP (whose keepalive takes a minute and more).
func TestHeartbeatReconnectsSilentLink(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.ZMQHeartbeatIvl, c.ZMQHeartbeatTimeout, c.ZMQHeartbeatTTL = 100, 300, 300 }
	pub := n.start(pubCN)
	watcher := n.start("")
	proxy := newTCPProxy(t, pub.Endpoint())
	watcher.cfg.Endpoints[pubCN] = []string{proxy.endpoint()}
	msgs := tail(t, watcher, "")
	flows := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool {
			if _, err := pub.Publish(ctxT(t), "beat", nil); err != nil {
				t.Fatal(err)
			}
			select {
			case <-msgs:
				return true
			case <-time.After(20 * time.Millisecond):
				return false
			}
		})
	}
	flows("messages through the proxy")
	proxy.stall()
	flows("messages again, on a new connection")
	proxy.mu.Lock()
	conns := proxy.nconns
	proxy.mu.Unlock()
	if conns < 2 {
		t.Fatalf("%d connection through the proxy: the stalled one was not replaced", conns)
	}
}
