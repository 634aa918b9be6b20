package amqpbridge

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestMain stops the binary's one broker, started by the first test that
// needs it (about 15 s).
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedRabbitMQ()
	os.Exit(code)
}

// Certnames of the test PKI.
const (
	bridgeCN    = "bridge01.example.org"
	publisherCN = "publisher01.example.org"
	consumerCN  = "consumer01.example.org"
)

var sharedPKI struct {
	once sync.Once
	pki  *devpki.PKI
	err  error
}

// testPKI is one PKI for the whole binary: RSA key generation is slow.
func testPKI(t *testing.T) *devpki.PKI {
	t.Helper()
	sharedPKI.once.Do(func() {
		dir, err := os.MkdirTemp("", "amqpbridge-pki-")
		if err != nil {
			sharedPKI.err = err
			return
		}
		sharedPKI.pki, sharedPKI.err = devpki.New(dir, devpki.Options{
			Hosts: []string{bridgeCN, publisherCN, consumerCN}, KeyBits: 1024})
	})
	if sharedPKI.err != nil {
		t.Fatal(sharedPKI.err)
	}
	return sharedPKI.pki
}

// localBus is a set of buses on one host, each bound on 127.0.0.1 with
// its port read back, all knowing each other's endpoints.
type localBus struct {
	t         *testing.T
	cfg       func() *gilmsg.Config
	endpoints map[string][]string
}

func newLocalBus(t *testing.T) *localBus {
	// Registered first, so it runs last: every bus and bridge of the test
	// is gone by then.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	pki := testPKI(t)
	return &localBus{t: t, cfg: pki.Config, endpoints: map[string][]string{}}
}

// reserve picks a free port for each name now, so that every bus knows
// the others whatever order they start in.
func (l *localBus) reserve(names ...string) {
	l.t.Helper()
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			l.t.Fatal(err)
		}
		l.endpoints[name] = []string{"tcp://" + ln.Addr().String()}
		ln.Close()
	}
}

// start makes a bus named name ("" subscribes only), bound on its
// reserved address or a free port; it knows every endpoint reserved or
// started before it.
func (l *localBus) start(name string, opts ...gilmsg.Option) *gilmsg.Bus {
	l.t.Helper()
	cfg := l.cfg()
	cfg.Name = name
	cfg.Endpoints = maps.Clone(l.endpoints)
	if _, ok := cfg.Endpoints[name]; name != "" && !ok {
		cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
	}
	cfg.AckTimeout = 2 // the machine is loaded; a false timeout would fail tests
	b, err := gilmsg.New(cfg, append([]gilmsg.Option{gilmsg.WithLogger(testLogger(l.t))}, opts...)...)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { b.Close() })
	if name != "" {
		l.endpoints[name] = []string{b.Endpoint()}
	}
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is the bridge config for the shared broker, with exchanges
// and queue names unique to the test.
func testConfig(t *testing.T, url string) Config {
	c := DefaultConfig(bridgeCN)
	c.URL = url
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	c.PublishExchange = "zmq.topic." + suffix
	c.ConsumeExchange = "fm.topic." + suffix
	c.Queue = "gilmsg-bridge." + suffix
	c.ReconnectMax = 500 * time.Millisecond
	return c
}

// runBridge runs r until the test ends.
func runBridge(t *testing.T, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge Run: %v", err)
		}
	})
}

// declareQueue runs a2z until it has connected, then stops it: its queue
// is declared, so that a backlog published next waits there for the run
// under test.
func declareQueue(t *testing.T, a2z *AMQPToZmq) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a2z.Run(ctx) }()
	waitFor(t, "the bridge to connect", a2z.Connected)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// broker is a test's own connection to the broker, for publishing and
// reading AMQP messages directly.
type broker struct {
	t    *testing.T
	conn *amqp.Connection
	ch   *amqp.Channel
}

func dialBroker(t *testing.T, url string) *broker {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &broker{t: t, conn: conn, ch: ch}
}

// queue declares a durable queue bound to exchange (declared too) with
// "#"; it survives broker restarts and the test's connection.
func (b *broker) queue(exchange string) string {
	b.t.Helper()
	if err := b.ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		b.t.Fatal(err)
	}
	name := "test." + exchange
	if _, err := b.ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		b.t.Fatal(err)
	}
	if err := b.ch.QueueBind(name, "#", exchange, false, nil); err != nil {
		b.t.Fatal(err)
	}
	return name
}

// ready is how many messages wait in queue.
func (b *broker) ready(queue string) int {
	b.t.Helper()
	q, err := b.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return q.Messages
}

// publish publishes and waits for the broker's confirm.
func (b *broker) publish(exchange, key string, p amqp.Publishing) {
	b.t.Helper()
	dc, err := b.ch.PublishWithDeferredConfirm(exchange, key, false, false, p)
	if err != nil {
		b.t.Fatal(err)
	}
	if !dc.Wait() {
		b.t.Fatalf("broker nacked %s", p.MessageId)
	}
}

// drain reads every message of queue until it has n or a generous bound
// passes, acking them.
func (b *broker) drain(queue string, n int) []amqp.Delivery {
	b.t.Helper()
	var out []amqp.Delivery
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		d, ok, err := b.ch.Get(queue, true)
		if err != nil {
			b.t.Fatal(err)
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		out = append(out, d)
	}
	return out
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collect subscribes b to prefix and gathers what it yields, by msg_id,
// ACKs left out.
type collected struct {
	mu    sync.Mutex
	msgs  map[string]*gilmsg.Message
	order []string // msg_ids as they came
	all   int
}

func (c *collected) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.order)
}

func (c *collected) get(id string) *gilmsg.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs[id]
}

func (c *collected) count() (unique, all int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs), c.all
}

func collect(t *testing.T, b *gilmsg.Bus, prefix string) *collected {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.Subscribe(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &collected{msgs: map[string]*gilmsg.Message{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.Close()
		for m, err := range sub.Messages(ctx) {
			if err != nil || strings.HasSuffix(m.Topic, ".gilmsg.ack") {
				continue
			}
			c.mu.Lock()
			c.msgs[m.MsgID] = m
			c.order = append(c.order, m.MsgID)
			c.all++
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}
