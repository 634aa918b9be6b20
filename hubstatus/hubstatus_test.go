package hubstatus

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// fakeHub binds a PUB on a free port and publishes report there every few
// milliseconds until the test ends, as a hub does every few seconds.
func fakeHub(t *testing.T, report []byte) string {
	t.Helper()
	zctx, err := zsock.NewContext(1)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zsock.New(zctx, zmq.PUB, zsock.Options{TCPKeepalive: -1}) // keepalive 0 with cnt, idle and intvl 0 loses every connection
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	endpoint, _ := sock.GetLastEndpoint()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			sock.SendBytes(report, zmq.DONTWAIT)
			select {
			case <-quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(quit)
		<-done
		sock.Close()
		zctx.Term()
	})
	return endpoint
}

// TestReadPythonReport: a report moksha's MonitoringProducer made
// (testdata/check, by make_fixtures.py) reads with every field.
func TestReadPythonReport(t *testing.T) {
	testenv.CheckLeaks(t)
	report, err := os.ReadFile(filepath.Join("..", "testdata", "check", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := fakeHub(t, report)
	st, raw, err := Read(t.Context(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != string(report) {
		t.Errorf("raw = %s, want the report as sent", raw)
	}
	if len(st.Consumers) != 2 || len(st.Producers) != 1 {
		t.Fatalf("status %+v: want 2 consumers and 1 producer", st)
	}
	c, s, p := st.Consumers[0], st.Consumers[1], st.Producers[0]
	if c.Name != "TestConsumer" || c.Module != "test.consumers" || !c.Initialized || !c.JSONify ||
		len(c.Topic) != 2 || c.Topic[1] != "café" || len(c.Times) != 2 || c.Times[1] != 1e-05 {
		t.Errorf("first consumer %+v", c)
	}
	if s.Name != "SleepyConsumer" || s.Initialized || s.Backlog != 2 || s.Exceptions != 1 || s.HeadcountIn != 7 || s.HeadcountOut != 5 {
		t.Errorf("second consumer %+v", s)
	}
	if p.Name != "MonitoringProducer" || p.Module != "moksha.hub.monitoring" || p.Frequency != 5 || p.LastRan != 1496780847.269628 || p.Now {
		t.Errorf("producer %+v", p)
	}
}

func TestReadRefusesWhatIsNoReport(t *testing.T) {
	testenv.CheckLeaks(t)
	for _, report := range []string{"not JSON", `{"consumers": 3}`, `[]`} {
		endpoint := fakeHub(t, []byte(report))
		_, raw, err := Read(t.Context(), endpoint)
		if !errors.Is(err, gilmsg.ErrInvalidMessage) || string(raw) != report {
			t.Errorf("%s: err %v, raw %q: want ErrInvalidMessage and the text", report, err, raw)
		}
	}
}

// A hub that publishes nothing (or is not there) ends the read with ctx,
// and a bad address is a config error naming the key.
func TestReadEndsWithCtx(t *testing.T) {
	testenv.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := Read(ctx, "tcp://127.0.0.1:1")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Read = %v, want the deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Read did not end with its ctx")
	}

	_, _, err := Read(t.Context(), "nowhere")
	var ce *gilmsg.ConfigError
	if !errors.As(err, &ce) || ce.Key != SocketKey || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("Read(nowhere) = %v, want a ConfigError on %s", err, SocketKey)
	}
}

// TestReadsWhatRunConsumersPublishes: Status is the reader's copy of the
// root's (unexported) report type, so every key a hub publishes must have
// a field here: re-encoding what Read decoded gives back what was sent.
func TestReadsWhatRunConsumersPublishes(t *testing.T) {
	testenv.CheckLeaks(t)
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "monitor")
	cfg := gilmsg.DefaultConfig()
	cfg.ValidateSignatures = false
	cfg.Extra = map[string]any{SocketKey: endpoint}
	hub, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	runCtx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() {
		c := gilmsg.ConsumerFunc("org.example.dev.web", func(context.Context, *gilmsg.Message) error { return nil })
		ran <- hub.RunConsumers(runCtx, []gilmsg.Consumer{c}, gilmsg.WithStatusInterval(20*time.Millisecond))
	}()
	defer func() { stop(); <-ran }()

	st, raw, err := Read(t.Context(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var sent, read any
	if err := json.Unmarshal(raw, &sent); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again, &read); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sent, read) {
		t.Errorf("a hub published\n%s\nRead kept\n%s", raw, again)
	}
	if len(st.Consumers) != 1 || len(st.Producers) != 1 {
		t.Errorf("status %+v: want 1 consumer and 1 producer", st)
	}
}

// TestReadSocketQueueBounded: Read's SUB socket has the receive queue
// every SUB gets at high_water_mark 0 (1 GiB of max_message_size
// messages), not libzmq's "no limit".
func TestReadSocketQueueBounded(t *testing.T) {
	zctx, err := zsock.NewContext(1)
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	sock, err := newSub(zctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	got, err := sock.GetRcvhwm()
	if err != nil {
		t.Fatal(err)
	}
	cfg := gilmsg.DefaultConfig()
	if want := int(gilmsg.DefaultFanoutBytes / cfg.MaxMessageBytes()); got != want || want <= 0 {
		t.Errorf("ZMQ_RCVHWM %d, want %d (1 GiB / max_message_size)", got, want)
	}
}
