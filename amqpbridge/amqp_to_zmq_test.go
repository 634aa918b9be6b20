package amqpbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestBothWaysNoLoop runs both bridges on one bus and one broker: broker
// messages reach the bus validated and signed by the bridge, bad ones are
// dropped with their reason and left off the queue, and nothing comes
// back round in either direction. A loop the guard stopped is logged at
// debug level, not as a warning; a latin-1 body is decoded as
// fedora-messaging decodes it.
func TestBothWaysNoLoop(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	pub := lb.start(publisherCN)
	bridgeBus := lb.start(bridgeCN)
	watcher := lb.start("")
	seen := collect(t, watcher, "")

	cfg := testConfig(t, rmq.URL)
	cfg.MaxBody = 1024
	z2a, err := NewZmqToAMQP(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &levelLog{}
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	toBroker := b.queue(cfg.PublishExchange)   // what zmq-to-amqp publishes
	fromBroker := b.queue(cfg.ConsumeExchange) // what reaches amqp-to-zmq's exchange
	runBridge(t, z2a.Run)
	runBridge(t, a2z.Run)
	waitFor(t, "both bridges to connect", func() bool { return z2a.Connected() && a2z.Connected() })

	year := strconv.Itoa(time.Now().Year())
	const key = "org.fedoraproject.prod.bodhi.update.comment"
	good := func(id string, n int) amqp.Publishing {
		return amqp.Publishing{MessageId: id, ContentType: "application/json", DeliveryMode: amqp.Persistent,
			Body: []byte(`{"n":` + strconv.Itoa(n) + `,"user":"alice"}`)}
	}
	send := []struct {
		p    amqp.Publishing
		want string // the msg_id on the bus; "" = dropped
	}{
		{good("abc-1", 1), year + "-abc-1"},
		{good("2019-kept", 2), "2019-kept"},
		{amqp.Publishing{MessageId: "bad-json", Body: []byte("not json")}, ""},
		{amqp.Publishing{MessageId: "bad-array", Body: []byte("[1,2]")}, ""},
		{amqp.Publishing{Body: []byte(`{"no":"id"}`)}, ""},
		{amqp.Publishing{MessageId: "bad-huge", Body: []byte(`{"x":"` + strings.Repeat("x", 2000) + `"}`)}, ""},
		{amqp.Publishing{MessageId: "bad-loop", Headers: amqp.Table{OriginHeader: "zmq"}, Body: []byte(`{}`)}, ""},
		{amqp.Publishing{MessageId: "latin-1", ContentEncoding: "latin-1", Body: []byte("{\"n\":4,\"user\":\"Jos\xe9\"}")}, year + "-latin-1"},
		{amqp.Publishing{MessageId: "bad-gzip", ContentEncoding: "gzip", Body: []byte(`{}`)}, ""},
		{good("last", 3), year + "-last"},
	}
	for _, s := range send {
		b.publish(cfg.ConsumeExchange, key, s.p)
	}
	waitFor(t, "the last message on the bus", func() bool { return seen.get(year+"-last") != nil })
	for i, s := range send {
		if s.want == "" {
			continue
		}
		m := seen.get(s.want)
		if m == nil {
			t.Errorf("message %d (%s) not on the bus", i, s.want)
			continue
		}
		if m.Signer != bridgeCN || m.Username != BridgeUsername || m.Topic != key || m.Crypto != "x509" {
			t.Errorf("%s: signer %q username %q topic %q crypto %q", s.want, m.Signer, m.Username, m.Topic, m.Crypto)
		}
		var got, want struct{ N int }
		json.Unmarshal(s.p.Body, &want)
		if err := m.Decode(&got); err != nil || got.N != want.N {
			t.Errorf("%s: payload %s (%v), want n %d", s.want, m.Body, err, want.N)
		}
	}
	if u, _ := seen.count(); u != 4 {
		t.Errorf("%d messages on the bus, want the 4 good ones", u)
	}
	var latin struct{ User string }
	if m := seen.get(year + "-latin-1"); m != nil && (m.Decode(&latin) != nil || latin.User != "José") {
		t.Errorf("latin-1 body arrived as %s", m.Body)
	}
	// The bus can deliver a message before the bridge's publish returns
	// and counts it.
	waitFor(t, "the bridge's count", func() bool { return a2z.Stats().Forwarded >= 4 })
	st := a2z.Stats()
	wantDrops := map[string]uint64{ErrBadBody.Error(): 2, ErrNoMessageID.Error(): 1, ErrTooLarge.Error(): 1, ErrLoop.Error(): 1,
		ErrBadEncoding.Error(): 1}
	for k, v := range wantDrops {
		if st.Dropped[k] != v {
			t.Errorf("amqp-to-zmq dropped %v, want %v", st.Dropped, wantDrops)
			break
		}
	}
	if st.Forwarded != 4 {
		t.Errorf("amqp-to-zmq forwarded %d, want 4", st.Forwarded)
	}
	if lv := logs.levels(ErrLoop.Error()); !slices.Equal(lv, []slog.Level{slog.LevelDebug}) {
		t.Errorf("the stopped loop was logged at %v, want once at DEBUG", lv)
	}
	if lv := logs.levels(`content_encoding "gzip"`); !slices.Equal(lv, []slog.Level{slog.LevelWarn}) {
		t.Errorf("the unknown encoding was logged at %v, want once at WARN, naming it", lv)
	}
	// Rejected, not requeued: the bridge's queue is empty.
	waitFor(t, "the bridge's queue to be empty", func() bool { return b.ready(cfg.Queue) == 0 })

	// The other way: a bus message goes to the broker once; the three
	// bridged messages do not go back (username amqp-bridge).
	waitFor(t, "zmq-to-amqp to drop the bridged messages", func() bool { return z2a.Stats().Dropped[ErrLoop.Error()] >= 4 })
	if err := pub.WaitSubscribers(ctxT(t), "x", 2); err != nil {
		t.Fatal(err)
	}
	r, err := pub.Publish(ctxT(t), "marker", map[string]any{"m": 1})
	if err != nil {
		t.Fatal(err)
	}
	got := b.drain(toBroker, 1)
	if len(got) != 1 || got[0].MessageId != r.MsgID {
		t.Fatalf("broker got %d messages, want the marker %s", len(got), r.MsgID)
	}
	waitFor(t, "the marker on the bus", func() bool { return seen.get(r.MsgID) != nil })
	if n := b.ready(toBroker); n != 0 {
		t.Errorf("%d more messages went to the broker: a loop", n)
	}
	if n := b.ready(fromBroker); n != len(send) {
		t.Errorf("%d messages on the consumed exchange, want the %d sent: a loop", n, len(send))
	}
	if st := a2z.Stats(); st.Received != uint64(len(send)) {
		t.Errorf("amqp-to-zmq received %d, want %d: a loop", st.Received, len(send))
	}
}

// TestAMQPToZmqWaitsForRecipients: with recipients, a delivery is acked
// only once they ACKed; while one is missing, the message stays in the
// broker and is delivered again; its copies keep the msg_id, so the
// recipient yields it once.
func TestAMQPToZmqWaitsForRecipients(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	lb.reserve(consumerCN, bridgeCN)
	consumer := lb.start(consumerCN)
	bridgeBus := lb.start(bridgeCN)

	cfg := testConfig(t, rmq.URL)
	cfg.Recipients = []string{consumerCN}
	cfg.Workers = 1
	// fedora-messaging's own exchange, which the broker predeclares (and
	// refuses to declare again), bound for this test's topic only.
	cfg.ConsumeExchange = DefaultConsumeExchange
	cfg.Bindings = []string{"org.example.t"}
	logs := &levelLog{}
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	runBridge(t, a2z.Run)
	waitFor(t, "the bridge to connect", a2z.Connected)
	b.publish(DefaultConsumeExchange, "org.example.t", amqp.Publishing{MessageId: "2026-r1", Body: []byte(`{"k":1}`), DeliveryMode: amqp.Persistent})

	// No recipient yet: published, not ACKed, nacked, delivered again.
	waitFor(t, "a nack", func() bool { return a2z.Stats().Nacked >= 1 })
	if a2z.Stats().Forwarded != 0 {
		t.Fatal("forwarded without the recipient's ACK")
	}

	seen := collect(t, consumer, "")
	waitFor(t, "the recipient's ACK", func() bool { return a2z.Stats().Forwarded == 1 })
	waitFor(t, "the queue to be empty", func() bool { return b.ready(cfg.Queue) == 0 })
	if u, all := seen.count(); u != 1 || all != 1 {
		t.Errorf("the recipient yielded %d messages (%d unique), want 1: %v", all, u, seen.msgs)
	}
	if m := seen.get("2026-r1"); m == nil || m.Signer != bridgeCN {
		t.Errorf("recipient got %+v", m)
	}
}

func TestFromAMQP(t *testing.T) {
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d      amqp.Delivery
		wantID string
		err    error
	}{
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: []byte(`{}`)}, "2031-x", nil},
		{amqp.Delivery{MessageId: "2020-x", RoutingKey: "a.b", Body: []byte(`{}`)}, "2020-x", nil},
		{amqp.Delivery{MessageId: "202-x", RoutingKey: "a.b", Body: []byte(`{}`)}, "2031-202-x", nil},
		{amqp.Delivery{MessageId: "abcd-x", RoutingKey: "a.b", Body: []byte(`{}`)}, "2031-abcd-x", nil},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: []byte(`{"a":`)}, "", ErrBadBody},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: []byte(`"s"`)}, "", ErrBadBody},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: []byte("\xff")}, "", ErrBadBody},
		{amqp.Delivery{MessageId: "x", Body: []byte(`{}`)}, "", ErrBadTopic},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a\xffb", Body: []byte(`{}`)}, "", ErrBadTopic},
		{amqp.Delivery{MessageId: "x", RoutingKey: "org.example.prod.gilmsg.ack", Body: []byte(`{"a":"b"}`)}, "", ErrBadTopic},
		{amqp.Delivery{MessageId: "x\xff", RoutingKey: "a.b", Body: []byte(`{}`)}, "", ErrNoMessageID},
		{amqp.Delivery{RoutingKey: "a.b", Body: []byte(`{}`)}, "", ErrNoMessageID},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Body: make([]byte, 11)}, "", ErrTooLarge},
		{amqp.Delivery{MessageId: "x", RoutingKey: "a.b", Headers: amqp.Table{OriginHeader: "zmq"}, Body: []byte(`{}`)}, "", ErrLoop},
	} {
		in, err := FromAMQP(&tc.d, 10, now)
		if !errors.Is(err, tc.err) || (err == nil && in.MsgID != tc.wantID) {
			t.Errorf("%q %q: got %+v, %v; want id %q, %v", tc.d.MessageId, tc.d.Body, in, err, tc.wantID, tc.err)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// levelLog is a slog handler that keeps each record's level and text
// (message and attributes).
type levelLog struct {
	mu      sync.Mutex
	records []levelRecord
}

type levelRecord struct {
	level slog.Level
	text  string
}

func (l *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levelLog) WithGroup(string) slog.Handler            { return l }

func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool { text += fmt.Sprintf(" %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.records = append(l.records, levelRecord{r.Level, text})
	l.mu.Unlock()
	return nil
}

// levels are the levels of the records whose text contains s.
func (l *levelLog) levels(s string) []slog.Level {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Level
	for _, r := range l.records {
		if strings.Contains(r.text, s) {
			out = append(out, r.level)
		}
	}
	return out
}

// TestAMQPToZmqKeepsOrder: without recipients, deliveries reach the bus
// in the broker's order, though the bridge signs several at once (a
// backlog waits in the queue when it starts, so it has many in hand).
func TestAMQPToZmqKeepsOrder(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	bridgeBus := lb.start(bridgeCN)
	watcher := lb.start("")
	seen := collect(t, watcher, "")

	cfg := testConfig(t, rmq.URL)
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	declareQueue(t, a2z)
	const n = 300
	want := make([]string, n)
	year := strconv.Itoa(time.Now().Year())
	for i := range n {
		id := fmt.Sprintf("order-%03d", i)
		want[i] = year + "-" + id
		b.publish(cfg.ConsumeExchange, "org.example.order", amqp.Publishing{MessageId: id, Body: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
	}
	waitFor(t, "the backlog in the queue", func() bool { return b.ready(cfg.Queue) == n })
	runBridge(t, a2z.Run)
	waitFor(t, "the backlog on the bus", func() bool { u, _ := seen.count(); return u == n })
	if got := seen.ids(); !slices.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("message %d on the bus is %s, want %s", i, got[i], want[i])
			}
		}
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
}

// Bad deliveries among good ones, signed on several goroutines: every
// good one reaches the bus in the broker's order, every delivery is
// settled once (a settle out of order, such as a reject after an ack of
// several that covered it, makes the broker close the channel: a
// reconnect), and none is left in the queue.
func TestAMQPToZmqSettlesEveryDelivery(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	bridgeBus := lb.start(bridgeCN)
	watcher := lb.start("")
	seen := collect(t, watcher, "")

	cfg := testConfig(t, rmq.URL)
	cfg.Window = 64
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	declareQueue(t, a2z)
	const n = 400
	var want []string
	bad := 0
	year := strconv.Itoa(time.Now().Year())
	for i := range n {
		id := fmt.Sprintf("settle-%03d", i)
		body := `{"i":` + strconv.Itoa(i) + `}`
		if i%7 == 3 || i%50 == 49 {
			body = `{"i":`
			bad++
		} else {
			want = append(want, year+"-"+id)
		}
		b.publish(cfg.ConsumeExchange, "org.example.settle", amqp.Publishing{MessageId: id, Body: []byte(body)})
	}
	waitFor(t, "the backlog in the queue", func() bool { return b.ready(cfg.Queue) == n })
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a2z.Run(ctx) }()
	waitFor(t, "the backlog on the bus", func() bool { u, _ := seen.count(); return u == len(want) })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := seen.ids(); !slices.Equal(got, want) {
		t.Fatalf("on the bus: %v\nwant %v", got, want)
	}
	s := a2z.Stats()
	if s.Reconnects != 0 || s.Forwarded != uint64(len(want)) || s.Dropped[ErrBadBody.Error()] != uint64(bad) || s.Nacked != 0 {
		t.Errorf("stats %+v: want no reconnect or nack, %d forwarded, %d dropped as bad", s, len(want), bad)
	}
	if left := b.ready(cfg.Queue); left != 0 {
		t.Errorf("%d deliveries went back to the queue", left)
	}
}

// Deliveries FromAMQP takes but the bus refuses, among others (in the
// sender's batch, without recipients): a body under amqp_max_body whose
// envelope is over the bus's max_message_size, and one nested as deep as
// JSON may be, one level too deep in an envelope. Each is dropped
// (rejected, counted), not nacked back to the head of the queue, where
// it would come round again for ever, each time holding the bridge for
// the nack's backoff. Every other delivery reaches
// the bus, in order without recipients.
func TestAMQPToZmqDropsWhatTheBusRefuses(t *testing.T) {
	for _, recipients := range []bool{false, true} {
		t.Run(fmt.Sprintf("recipients=%v", recipients), func(t *testing.T) {
			rmq := testenv.SharedRabbitMQ(t)
			lb := newLocalBus(t)
			lb.reserve(consumerCN, bridgeCN)
			consumer := lb.start(consumerCN)
			bridgeBus := lb.start(bridgeCN, gilmsg.WithMaxMessageSize(16<<10))
			seen := collect(t, consumer, "")

			cfg := testConfig(t, rmq.URL)
			cfg.Window = 64
			if recipients {
				cfg.Recipients = []string{consumerCN}
			}
			a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			b := dialBroker(t, rmq.URL)
			declareQueue(t, a2z)
			const n = 40
			var want []string
			year := strconv.Itoa(time.Now().Year())
			for i := range n {
				id := fmt.Sprintf("big-%03d", i)
				body := `{"i":` + strconv.Itoa(i) + `}`
				switch i {
				case n / 2:
					body = `{"pad":"` + strings.Repeat("x", 32<<10) + `"}` // under amqp_max_body, over the bus's limit
				case n/2 + 1:
					// As deep as JSON may be: so deep in an envelope.
					body = `{"deep":` + strings.Repeat("[", gilmsg.MaxJSONDepth-1) + strings.Repeat("]", gilmsg.MaxJSONDepth-1) + `}`
				default:
					want = append(want, year+"-"+id)
				}
				b.publish(cfg.ConsumeExchange, "org.example.big", amqp.Publishing{MessageId: id, Body: []byte(body)})
			}
			waitFor(t, "the backlog in the queue", func() bool { return b.ready(cfg.Queue) == n })
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a2z.Run(ctx) }()
			waitFor(t, "the backlog on the bus", func() bool { u, _ := seen.count(); return u == len(want) })
			waitFor(t, "the two deliveries dropped", func() bool {
				d := a2z.Stats().Dropped
				return d[ErrTooLarge.Error()] == 1 && d[ErrBadBody.Error()] == 1
			})
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got := seen.ids()
			if !recipients && !slices.Equal(got, want) {
				t.Fatalf("on the bus: %v\nwant %v", got, want)
			}
			if slices.Sort(got); !slices.Equal(got, want) {
				t.Fatalf("on the bus: %v\nwant %v", got, want)
			}
			if s := a2z.Stats(); s.Forwarded != uint64(len(want)) || s.Nacked != 0 || s.Received != n {
				t.Errorf("stats %+v: want %d received, %d forwarded, none nacked", s, n, len(want))
			}
			if left := b.ready(cfg.Queue); left != 0 {
				t.Errorf("%d deliveries went back to the queue", left)
			}
		})
	}
}

// The bus closing under the sender, mid-batch: Run ends with ErrClosed;
// every delivery sent to the bus was acked and reached the bus, in order,
// and every other one is back in the queue: none acked that was not sent,
// none sent and left to come again.
func TestAMQPToZmqBusClosedMidBatch(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	bridgeBus := lb.start(bridgeCN)
	watcher := lb.start("")
	seen := collect(t, watcher, "")

	cfg := testConfig(t, rmq.URL)
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	declareQueue(t, a2z)
	const n = 600
	var want []string
	year := strconv.Itoa(time.Now().Year())
	for i := range n {
		id := fmt.Sprintf("closed-%03d", i)
		want = append(want, year+"-"+id)
		b.publish(cfg.ConsumeExchange, "org.example.closed", amqp.Publishing{MessageId: id, Body: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
	}
	waitFor(t, "the backlog in the queue", func() bool { return b.ready(cfg.Queue) == n })
	done := make(chan error, 1)
	go func() { done <- a2z.Run(context.Background()) }()
	waitFor(t, "some deliveries on the bus", func() bool { return a2z.Stats().Forwarded >= 20 })
	bridgeBus.Close()
	if err := <-done; !errors.Is(err, gilmsg.ErrClosed) {
		t.Fatalf("Run after the bus closed: %v, want ErrClosed", err)
	}
	sent := int(a2z.Stats().Forwarded)
	if sent == n {
		t.Skip("every delivery was sent before the bus closed")
	}
	waitFor(t, "the unsent deliveries back in the queue", func() bool { return b.ready(cfg.Queue) >= n-sent })
	if left := b.ready(cfg.Queue); left != n-sent {
		t.Errorf("%d deliveries back in the queue, %d sent: want %d", left, sent, n-sent)
	}
	waitFor(t, "the sent deliveries on the bus", func() bool { u, _ := seen.count(); return u >= sent })
	if got := seen.ids(); !slices.Equal(got, want[:sent]) {
		t.Errorf("on the bus: %d messages, want the first %d in order", len(got), sent)
	}
}
