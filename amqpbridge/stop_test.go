package amqpbridge

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestZmqToAMQPStoppedBeforeConfirmSendsNoACK stops the bridge itself
// after it published a reliable message and the broker took it, but
// before the broker's confirm reached the bridge (a proxy holds what the
// broker sends). No ACK went out: the bridge ACKs on the confirm, never on
// the publish. The first message, confirmed, shows the ACK path works.
func TestZmqToAMQPStoppedBeforeConfirmSendsNoACK(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	lb.reserve(publisherCN, bridgeCN)
	pub := lb.start(publisherCN)
	bridgeBus := lb.start(bridgeCN)
	acks := collectAcks(t, lb.start(""))

	proxy := newHoldProxy(t, "127.0.0.1:"+strconv.Itoa(rmq.Port))
	cfg := testConfig(t, strings.Replace(rmq.URL, "127.0.0.1:"+strconv.Itoa(rmq.Port), proxy.addr, 1))
	b := dialBroker(t, rmq.URL)
	toBroker := b.queue(cfg.PublishExchange)
	z2a, err := NewZmqToAMQP(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopBridge := context.WithCancel(context.Background())
	defer stopBridge()
	ran := make(chan error, 1)
	go func() { ran <- z2a.Run(ctx) }()
	waitFor(t, "the bridge to connect", z2a.Connected)
	if err := pub.WaitSubscribers(ctxT(t), "x", 1); err != nil {
		t.Fatal(err)
	}

	first, err := pub.Publish(ctxT(t), "stop", map[string]any{"n": 1},
		gilmsg.WithRecipients(bridgeCN), gilmsg.WithAckTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("confirmed message: %v", err)
	}
	waitFor(t, "the first ACK seen on the bus", func() bool { return acks.has("ACK " + first.MsgID) })

	proxy.hold()
	published := make(chan error, 1)
	var second string
	pubCtx := ctxT(t)
	go func() {
		r, err := pub.Publish(pubCtx, "stop", map[string]any{"n": 2},
			gilmsg.WithRecipients(bridgeCN), gilmsg.WithAckTimeout(time.Second))
		var te *gilmsg.AckTimeoutError
		if errors.As(err, &te) {
			second = te.MsgID
		} else if err == nil {
			second = r.MsgID
		}
		published <- err
	}()
	// In the broker: the bridge published it, and the broker's confirm
	// is on its way, held by the proxy.
	waitFor(t, "the second message in the broker", func() bool { return b.ready(toBroker) == 2 })
	stopBridge()
	proxy.sever() // lets Run's channel close fail instead of waiting for the broker
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}

	if err := <-published; !errors.Is(err, gilmsg.ErrAckTimeout) {
		t.Errorf("reliable publish through a bridge stopped before the confirm: %v, want ErrAckTimeout", err)
	}
	// Whatever the bridge's bus sent before this marker is seen before it.
	marker, err := bridgeBus.Publish(ctxT(t), "marker", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker", func() bool { return acks.has(marker.MsgID) })
	if second == "" || acks.has("ACK "+second) || !acks.has(second) {
		t.Errorf("bus saw %v; want the second message %s, unconfirmed, without its ACK", acks.ids(), second)
	}
}

// ackWatch records, in order, the msg_id of each message, and "ACK <id>"
// for each ACK of id.
type ackWatch struct {
	mu   sync.Mutex
	seen []string
}

func (a *ackWatch) has(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.seen {
		if s == id {
			return true
		}
	}
	return false
}

func (a *ackWatch) ids() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func collectAcks(t *testing.T, b *gilmsg.Bus) *ackWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.Subscribe(ctx, "", gilmsg.WithoutAck())
	if err != nil {
		t.Fatal(err)
	}
	a := &ackWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.Close()
		for m, err := range sub.Messages(ctx) {
			if err != nil {
				continue
			}
			id := m.MsgID
			if strings.HasSuffix(m.Topic, ".gilmsg.ack") {
				var ack struct {
					AckMsgID string `json:"ack_msg_id"`
				}
				if m.Decode(&ack) != nil {
					continue
				}
				id = "ACK " + ack.AckMsgID
			}
			a.mu.Lock()
			a.seen = append(a.seen, id)
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// holdProxy forwards TCP connections to a target. Once held, it drops
// what the target sends (the client's bytes still go through), as a
// network that lost the way back would; sever closes every connection.
type holdProxy struct {
	addr string
	ln   net.Listener

	mu    sync.Mutex
	held  bool
	conns []net.Conn
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{addr: ln.Addr().String(), ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); p.down(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.sever(); wg.Wait() })
	return p
}

// down copies from the target to the client, dropping bytes while held.
func (p *holdProxy) down(client, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			if !held {
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *holdProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

func (p *holdProxy) sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
