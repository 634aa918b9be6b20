package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestBridgeBothWaysAsREADME follows the README's "Moving a bus to
// RabbitMQ": both directions run as bridge01, whose endpoints entry has an
// address per process (step 2). A reliable logger to bridge01 exits 0 with
// its message in the broker (steps 3-4); a broker message reaches the bus
// signed by bridge01 (step 6); it does not come back to the broker
// (step 7).
func TestBridgeBothWaysAsREADME(t *testing.T) {
	t.Parallel()
	rmq := testenv.SharedRabbitMQ(t)
	pki := devPKI(t, "bridge01", "app01")
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{"bridge01": {freePort(t), freePort(t)}, "app01": {freePort(t)}}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 10)
	toBroker, fromBroker := "zmq.topic.readme"+suffix, "fm.topic.readme"+suffix
	config := writeConfigWith(t, cfg, map[string]any{"amqp_url": rmq.URL,
		"amqp_publish_exchange": toBroker, "amqp_consume_exchange": fromBroker, "amqp_queue": "gilmsg-bridge.readme" + suffix})

	conn, err := amqp.Dial(rmq.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	for _, x := range []string{toBroker, fromBroker} {
		if err == nil {
			err = ch.ExchangeDeclare(x, "topic", true, false, false, false, nil)
		}
	}
	if err == nil {
		err = ch.QueueBind(q.Name, "#", toBroker, false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	watcherCfg := *cfg
	watcherCfg.Name = ""
	onBus := collect(t, newBus(t, &watcherCfg), "org.example.dev.billing.")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stderr [2]*syncBuffer
	var done [2]<-chan cliResult
	for i, dir := range []string{"zmq-to-amqp", "amqp-to-zmq"} {
		_, stderr[i], done[i] = startCLI(t, ctx, nil, "bridge", dir, "--config", config, "--name", "bridge01", "-v")
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(stderr[i].String(), "bus endpoint") && time.Now().Before(deadline) {
			select {
			case res := <-done[i]:
				t.Fatalf("%s as bridge01: exit %d: %s", dir, res.code, res.stderr)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	res := runCLI(t, nil, "logger", "--config", config, "--name", "app01", "--recipients", "bridge01",
		"--ack-timeout", "30", "--message", "to the broker")
	if res.code != exitOK {
		t.Fatalf("reliable logger to bridge01: exit %d, stderr %q", res.code, res.stderr)
	}
	if d, ok, err := ch.Get(q.Name, true); err != nil || !ok || string(d.Body) != `{"log":"to the broker"}` {
		t.Fatalf("the logger's message is not in the broker after exit 0: %v %v %s", ok, err, d.Body)
	}

	if err := ch.Publish(fromBroker, "org.example.dev.billing.paid", false, false, amqp.Publishing{
		MessageId: "2026-readme", ContentType: "application/json", Body: []byte(`{"paid":1}`)}); err != nil {
		t.Fatal(err)
	}
	m := next(t, onBus)
	if m.MsgID != "2026-readme" || m.Signer != "bridge01" || payload(t, m) != `{"paid":1}` {
		t.Errorf("from the broker: %s signed by %q, %s", m.MsgID, m.Signer, payload(t, m))
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr[0].String(), "would loop") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d, ok, _ := ch.Get(q.Name, true); ok || !strings.Contains(stderr[0].String(), "would loop") {
		t.Errorf("the broker's message came back to the broker (%s), or zmq-to-amqp did not say it stopped the loop: %s",
			d.Body, stderr[0].String())
	}
	stop()
	for i := range done {
		if res := <-done[i]; res.code != exitOK {
			t.Errorf("bridge %d: exit %d: %s", i, res.code, res.stderr)
		}
	}
}

// Two processes under a name with one address: the second cannot bind,
// and says what to do.
func TestBridgeNameInUse(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, "bridge01")
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{"bridge01": {freePort(t)}}
	config := writeConfig(t, cfg)
	first := *cfg
	first.Name = "bridge01"
	newBus(t, &first)
	dead := "amqp://guest:guest@" + strings.TrimPrefix(freePort(t), "tcp://") + "/"
	res := runCLI(t, nil, "bridge", "amqp-to-zmq", "--config", config, "--name", "bridge01", "--amqp-url", dead)
	if res.code != exitFailure || !strings.Contains(res.stderr, `list one per direction under endpoints["bridge01"]`) {
		t.Errorf("exit %d, stderr %q; want 1, saying to give bridge01 an address per process", res.code, res.stderr)
	}
}
