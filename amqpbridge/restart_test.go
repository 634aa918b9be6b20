package amqpbridge

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestBrokerRestartMidStream streams both ways through a graceful restart
// of the broker, then through a kill -9 of it. Every bus message the bridge ACKed (a reliable publish that
// succeeded, exit 0 of gilmsg logger) is in the broker afterwards, and
// every message the broker confirmed reaches the bus; while the broker is
// down a reliable publish to the bridge times out (exit 3): no ACK without
// the broker's confirm.
func TestBrokerRestartMidStream(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	lb := newLocalBus(t)
	lb.reserve(publisherCN, bridgeCN)
	pub := lb.start(publisherCN)
	bridgeBus := lb.start(bridgeCN)
	watcher := lb.start("")
	seen := collect(t, watcher, "")

	cfg := testConfig(t, rmq.URL)
	z2a, err := NewZmqToAMQP(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	a2z, err := NewAMQPToZmq(bridgeBus, cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	toBroker := b.queue(cfg.PublishExchange)
	b.queue(cfg.ConsumeExchange)
	runBridge(t, z2a.Run)
	runBridge(t, a2z.Run)
	waitFor(t, "both bridges to connect", func() bool { return z2a.Connected() && a2z.Connected() })

	var mu sync.Mutex
	var acked, confirmed []string
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), len(confirmed)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(2)
	go func() { // bus → broker, reliable, the bridge as recipient
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			r, err := pub.Publish(ctx, "restart", map[string]any{"i": i},
				gilmsg.WithRecipients(bridgeCN), gilmsg.WithAckTimeout(2*time.Second))
			if err == nil {
				mu.Lock()
				acked = append(acked, r.MsgID)
				mu.Unlock()
			}
		}
	}()
	go func() { // broker → bus, confirmed publishes
		defer wg.Done()
		for j := 0; ctx.Err() == nil; {
			conn, err := amqp.Dial(rmq.URL)
			if err != nil {
				time.Sleep(100 * time.Millisecond) // the broker is down: try again
				continue
			}
			ch, err := conn.Channel()
			if err == nil {
				err = ch.Confirm(false)
			}
			for err == nil && ctx.Err() == nil {
				id := "s-" + strconv.Itoa(j)
				var dc *amqp.DeferredConfirmation
				dc, err = ch.PublishWithDeferredConfirm(cfg.ConsumeExchange, "org.example.restart", false, false,
					amqp.Publishing{MessageId: id, DeliveryMode: amqp.Persistent, Body: []byte(`{"j":` + strconv.Itoa(j) + `}`)})
				if err != nil {
					break
				}
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ok, werr := dc.WaitContext(wctx)
				cancel()
				if werr != nil || !ok {
					break // not confirmed: not counted; dial again
				}
				mu.Lock()
				confirmed = append(confirmed, id)
				mu.Unlock()
				j++
			}
			conn.Close()
		}
	}()

	var a0, c0 int
	for _, fault := range []struct {
		name string
		stop func() error
	}{
		{"graceful restart", rmq.StopNode},
		{"kill -9", func() error { rmq.KillNode(); return nil }},
	} {
		a, c := count()
		waitFor(t, "traffic both ways before the "+fault.name, func() bool { a1, c1 := count(); return a1 >= a+10 && c1 >= c+10 })
		if err := fault.stop(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bridges to notice the "+fault.name, func() bool { return !z2a.Connected() && !a2z.Connected() })
		_, err = pub.Publish(ctxT(t), "while-down", map[string]any{}, gilmsg.WithRecipients(bridgeCN), gilmsg.WithAckTimeout(time.Second))
		if !errors.Is(err, gilmsg.ErrAckTimeout) {
			t.Errorf("%s: reliable publish to the bridge with the broker down: %v, want an ACK timeout", fault.name, err)
		}
		a0, c0 = count()
		began := time.Now()
		if err := rmq.StartNode(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: the broker was back in %v", fault.name, time.Since(began).Round(time.Millisecond))
	}
	waitFor(t, "traffic both ways after the restarts", func() bool { a, c := count(); return a >= a0+10 && c >= c0+10 })
	stop()
	wg.Wait()

	// Everything the bridge ACKed is in the broker (copies allowed).
	mu.Lock()
	wantInBroker, wantOnBus := acked, confirmed
	mu.Unlock()
	b = dialBroker(t, rmq.URL)
	inBroker := map[string]bool{}
	missing := func() []string {
		var out []string
		for _, id := range wantInBroker {
			if !inBroker[id] {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		d, ok, err := b.ch.Get(toBroker, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		inBroker[d.MessageId] = true
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("%d of %d messages the bridge ACKed are not in the broker: %v", len(m), len(wantInBroker), m)
	}
	// Everything the broker confirmed reaches the bus.
	year := strconv.Itoa(time.Now().Year())
	waitFor(t, "every confirmed message on the bus", func() bool {
		for _, id := range wantOnBus {
			if seen.get(year+"-"+id) == nil {
				return false
			}
		}
		return true
	})
	t.Logf("bus→broker: %d ACKed (%d after the last restart); broker→bus: %d confirmed; zmq-to-amqp %+v; amqp-to-zmq %+v",
		len(wantInBroker), len(wantInBroker)-a0, len(wantOnBus), z2a.Stats(), a2z.Stats())
}
