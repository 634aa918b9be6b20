package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/gilmsg/gilmsg-go/amqpbridge"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// TestMain keeps the machine's FEDMSG_* variables out of the tests (a test
// that sets one with t.Setenv cannot be parallel, so the others never see
// it), stops the broker and the PostgreSQL the tests started, if any, and
// then fails if any goroutine is left: with the tests running in parallel,
// only the whole package's end is a moment when none should run.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "FEDMSG_") {
			os.Unsetenv(name)
		}
	}
	code := testenv.Run(m) // and stops the PostgreSQL it started
	testenv.StopSharedRabbitMQ()
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goroutines left behind by the tests:", err)
		code = 1
	}
	os.Exit(code)
}

// TestLoggerToBridgeExitCodes: gilmsg logger with the bridge as recipient
// exits 3 while the broker is down (no ACK without the broker's confirm)
// and 0 once it is up, and the message is then in the broker.
func TestLoggerToBridgeExitCodes(t *testing.T) {
	t.Parallel()
	const bridgeCN, appCN = "bridge01", "app01"
	pki := devPKI(t, bridgeCN, appCN)
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{bridgeCN: {freePort(t)}, appCN: {freePort(t)}}
	config := writeConfig(t, cfg)
	bridgeCfg := *cfg
	bridgeCfg.Name = bridgeCN
	bus := newBus(t, &bridgeCfg)

	runBridge := func(url, exchange string) (stop func()) {
		bc := amqpbridge.DefaultConfig(bridgeCN)
		bc.URL, bc.PublishExchange = url, exchange
		z, err := amqpbridge.NewZmqToAMQP(bus, bc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- z.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge: %v", err)
			}
		}
	}
	logger := func(msg, timeout string) cliResult {
		return runCLI(t, nil, "logger", "--config", config, "--name", appCN,
			"--recipients", bridgeCN, "--ack-timeout", timeout, "--message", msg)
	}

	// No broker listens there.
	stop := runBridge("amqp://guest:guest@"+strings.TrimPrefix(freePort(t), "tcp://")+"/", "zmq.topic")
	if res := logger("broker down", "1"); res.code != exitTimeout || !strings.Contains(res.stderr, bridgeCN) {
		t.Errorf("broker down: exit %d, stderr %q; want 3 naming %s", res.code, res.stderr, bridgeCN)
	}
	stop()

	rmq := testenv.SharedRabbitMQ(t)
	exchange := fmt.Sprintf("zmq.topic.cli%d", time.Now().UnixNano())
	conn, err := amqp.Dial(rmq.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, "#", exchange, false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer runBridge(rmq.URL, exchange)()
	// A generous timeout: the bridge may still be connecting.
	res := logger("broker up", "20")
	if res.code != exitOK {
		t.Fatalf("broker up: exit %d, stderr %q", res.code, res.stderr)
	}
	// The ACK came after the confirm, so the message is there already.
	d, ok, err := ch.Get(q.Name, true)
	if err != nil || !ok {
		t.Fatalf("message not in the broker after exit 0: %v %v", ok, err)
	}
	if string(d.Body) != `{"log":"broker up"}` || d.RoutingKey != "org.example.dev.logger.log" {
		t.Errorf("broker got %s on %q", d.Body, d.RoutingKey)
	}
}

// TestBridgeCommand runs the command itself: usage errors exit 2, and a
// bridge whose broker is down still starts, says where it is, and stops
// cleanly on SIGINT.
func TestBridgeCommand(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, "bridge01")
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{"bridge01": {"tcp://127.0.0.1:*"}}
	config := writeConfig(t, cfg)
	for _, args := range [][]string{
		{"bridge", "zmq-to-amqp", "--config", config},
		{"bridge", "amqp-to-zmq", "--config", config, "--name", "bridge01", "--exchange", "zmq.topic"},
		{"bridge", "zmq-to-amqp", "--config", config, "--name", "bridge01", "--amqp-url", "http://x"},
		{"bridge", "zmq-to-amqp", "--config", config, "--name", "bridge01", "extra"},
	} {
		if res := runCLI(t, nil, args...); res.code != exitUsage {
			t.Errorf("%q: exit %d, want 2; stderr %q", args, res.code, res.stderr)
		}
	}
	for _, dir := range []string{"zmq-to-amqp", "amqp-to-zmq"} {
		ctx, cancel := context.WithCancel(context.Background())
		dead := "amqp://guest:guest@" + strings.TrimPrefix(freePort(t), "tcp://") + "/"
		_, errOut, done := startCLI(t, ctx, nil, "bridge", dir, "--config", config, "--name", "bridge01", "--amqp-url", dead)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(errOut.String(), "broker not reachable") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		res := <-done
		if res.code != exitOK || !strings.Contains(res.stderr, "gilmsg bridge "+dir+": bus endpoint tcp://127.0.0.1:") ||
			!strings.Contains(res.stderr, "broker not reachable") || !strings.Contains(res.stderr, "stopped; received 0") ||
			strings.Contains(res.stderr, "guest:guest") {
			t.Errorf("%s: exit %d, stderr %q", dir, res.code, res.stderr)
		}
	}
}

// TestBenchAMQP runs the bridge's bench with tiny sizes against the test
// broker and checks the shape of the result, not the speed.
func TestBenchAMQP(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	t.Setenv("TMPDIR", t.TempDir())
	res := runCLI(t, nil, "bench", "--amqp-url", rmq.URL, "--duration", "50ms", "--key-bits", "1024", "--json")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	out := lines(res.stdout)
	got := mustJSON(t, out[len(out)-1])
	for _, k := range []string{"amqp_raw_confirmed_msgs_per_s", "amqp_zmq_to_amqp_msgs_per_s", "amqp_amqp_to_zmq_msgs_per_s",
		"amqp_zmq_to_amqp_vs_raw", "amqp_amqp_to_zmq_vs_raw", "bridge_to_bus_vs_raw", "amqp_amqp_to_zmq_vs_sign", "rsa_sign_per_s", "amqp_messages",
		"amqp_raw_consumed_msgs_per_s", "bridge_to_bus_vs_raw_consume"} {
		if v, ok := got[k].(float64); !ok || !(v > 0) {
			t.Errorf("%s = %#v, want a positive number", k, got[k])
		}
	}
	if !strings.Contains(res.stdout, "bridge zmq→amqp") || !strings.Contains(res.stdout, "raw amqp091-go, confirms") {
		t.Errorf("table:\n%s", res.stdout)
	}
}
