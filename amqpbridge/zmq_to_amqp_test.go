package amqpbridge

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

type vector struct {
	Name  string `json:"name"`
	Topic string `json:"topic"`
	Body  string `json:"body"`
	Valid bool   `json:"valid"`
}

func readVectors(t *testing.T) []vector {
	f, err := os.Open("../testdata/vectors.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// vectorConfig is the configuration Python judged the vectors under,
// with the bridge named "bridge" and signing its ACKs as shell-app01.
func vectorConfig(t *testing.T) *gilmsg.Config {
	data, err := os.ReadFile("../testdata/vectors-config.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gilmsg.ParseConfig(data, "json")
	if err != nil {
		t.Fatal(err)
	}
	pki, _ := filepath.Abs("../testdata/pki")
	cfg.SSLDir = pki
	cfg.CACertLocation = filepath.Join(pki, cfg.CACertLocation)
	cfg.CRLLocation = filepath.Join(pki, cfg.CRLLocation)
	cfg.Certnames = map[string]string{"bridge": "shell-app01"}
	cfg.Name = "bridge"
	return cfg
}

// TestZmqToAMQPCarriesWhatPythonValidates replays the Python-judged
// vectors onto the bus: exactly the messages Python fedmsg calls valid
// reach the broker, in fedora-messaging form, except gilmsg ACKs; the
// invalid ones, a signed message from amqp-to-zmq (loop guard) and a
// signed message without msg do not.
func TestZmqToAMQPCarriesWhatPythonValidates(t *testing.T) {
	rmq := testenv.SharedRabbitMQ(t)
	vectors := readVectors(t)
	cfg := vectorConfig(t)

	// A raw publisher standing for the Python peers: it sends the vectors'
	// frames byte for byte.
	feed, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	feed.SetLinger(100 * time.Millisecond) // not 0: see minSendLingerMS in the gilmsg package
	if err := feed.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	feedEP, _ := feed.GetLastEndpoint()
	cfg.Endpoints = map[string][]string{"bridge": {"tcp://127.0.0.1:*"}, "pyfeed": {feedEP}}
	bus, err := gilmsg.New(cfg, gilmsg.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })

	bc := testConfig(t, rmq.URL)
	bc.MaxBody = 4096 // signed/long-text's msg is longer: not carried
	z, err := NewZmqToAMQP(bus, bc, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := dialBroker(t, rmq.URL)
	queue := b.queue(bc.PublishExchange)
	runBridge(t, z.Run)
	waitFor(t, "the bridge to connect", z.Connected)
	feed.SetRcvtimeo(30 * time.Second)
	if sub, err := feed.RecvBytes(0); err != nil || len(sub) == 0 || sub[0] != 1 {
		t.Fatalf("no subscription from the bridge: %q %v", sub, err)
	}

	// Signed by shell-app01, valid, but not to be carried.
	signer, err := gilmsg.LoadSigner(cfg.SSLDir, "shell-app01")
	if err != nil {
		t.Fatal(err)
	}
	signed := func(fields map[string]any) vector {
		fields["timestamp"] = json.Number("1700000000")
		fields["i"] = json.Number("1")
		if err := signer.Sign(fields); err != nil {
			t.Fatal(err)
		}
		body, err := gilmsg.MarshalCanonical(fields)
		if err != nil {
			t.Fatal(err)
		}
		return vector{Topic: fields["topic"].(string), Body: string(body)}
	}
	const topic = "org.fedoraproject.dev.shell.logger.log"
	extra := []vector{
		signed(map[string]any{"topic": topic, "msg": map[string]any{"x": "loop"}, "msg_id": "2026-loop", "username": BridgeUsername}),
		signed(map[string]any{"topic": topic, "msg_id": "2026-nomsg", "username": "alice"}),
		signed(map[string]any{"topic": topic, "msg": "a string", "msg_id": "2026-string", "username": "alice"}),
	}

	// Everything that must not cross first: the bridge keeps the bus's
	// order, so once the last valid vector is in the queue, anything
	// wrongly carried would be there too.
	var send, want []vector
	for _, v := range vectors {
		if !v.Valid {
			send = append(send, v)
		}
	}
	send = append(send, extra...)
	tooLarge := 0
	for _, v := range vectors {
		if !v.Valid {
			continue
		}
		send = append(send, v) // sent; carried unless an ACK or too large
		env, err := gilmsg.ParseEnvelope([]byte(v.Body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := gilmsg.MarshalCanonical(env.Msg())
		switch {
		case len(body) > bc.MaxBody:
			tooLarge++
		case !strings.HasSuffix(v.Topic, ".gilmsg.ack"):
			want = append(want, v)
		}
	}
	if tooLarge == 0 {
		t.Fatal("no vector is over amqp_max_body: the limit goes untested")
	}
	for _, v := range send {
		if _, err := feed.SendMessage(v.Topic, v.Body); err != nil {
			t.Fatal(err)
		}
	}
	got := b.drain(queue, len(want))
	if len(got) != len(want) {
		t.Fatalf("broker got %d messages, want %d", len(got), len(want))
	}
	for i, d := range got {
		v := want[i]
		env, err := gilmsg.ParseEnvelope([]byte(v.Body))
		if err != nil {
			t.Fatal(err)
		}
		wantBody, _ := gilmsg.MarshalCanonical(env.Msg())
		if d.RoutingKey != v.Topic || d.MessageId != env.MsgID || string(d.Body) != string(wantBody) {
			t.Errorf("%s: got key %q id %q body %s, want %q %q %s", v.Name, d.RoutingKey, d.MessageId, d.Body, v.Topic, env.MsgID, wantBody)
		}
		checkFedoraMessagingForm(t, v.Name, d, env)
	}
	if n := b.ready(queue); n != 0 {
		t.Errorf("%d more messages in the queue than the valid ones", n)
	}
	// A message reaches the queue before its confirm reaches the bridge,
	// which counts it then.
	waitFor(t, "the broker's confirms", func() bool { return z.Stats().Forwarded >= uint64(len(want)) })
	st := z.Stats()
	// Loops: the guard, the ACK vector, and the bridge's own ACK of the
	// gilmsg vector when it hears it.
	if st.Dropped[ErrLoop.Error()] < 2 || st.Dropped[ErrNoPayload.Error()] != 2 || st.Dropped[ErrTooLarge.Error()] != uint64(tooLarge) {
		t.Errorf("dropped %v, want at least 2 loops (guard, ACK), 2 without an object msg and %d too large", st.Dropped, tooLarge)
	}
	if st.Forwarded != uint64(len(want)) {
		t.Errorf("forwarded %d, want %d", st.Forwarded, len(want))
	}
	if inv := bus.Stats().Invalid; len(inv) == 0 {
		t.Error("the bus rejected nothing; the invalid vectors did not arrive?")
	}
}

func checkFedoraMessagingForm(t *testing.T, name string, d amqp.Delivery, env *gilmsg.Envelope) {
	t.Helper()
	if d.ContentType != "application/json" || d.ContentEncoding != "utf-8" || d.DeliveryMode != amqp.Persistent {
		t.Errorf("%s: content %q %q delivery mode %d", name, d.ContentType, d.ContentEncoding, d.DeliveryMode)
	}
	sentAt := time.Unix(env.Timestamp, 0).UTC().Format("2006-01-02T15:04:05+00:00")
	if d.Headers[headerSchema] != "base.message" || d.Headers[headerSentAt] != sentAt || d.Headers[headerSeverity] != int32(20) {
		t.Errorf("%s: headers %v, want schema base.message, sent-at %s, severity 20", name, d.Headers, sentAt)
	}
	if d.Exchange == "" {
		t.Errorf("%s: published to the default exchange", name)
	}
	var v any
	if err := json.Unmarshal(d.Body, &v); err != nil {
		t.Errorf("%s: body is not JSON: %v", name, err)
	}
}

func TestToAMQPDrops(t *testing.T) {
	for _, tc := range []struct {
		body string
		want error
	}{
		{`{"topic":"a.b","msg":{"x":1},"username":"amqp-bridge","msg_id":"1"}`, ErrLoop},
		{`{"topic":"a.dev.gilmsg.ack","msg":{"ack_msg_id":"1"},"msg_id":"1"}`, ErrLoop},
		{`{"topic":"a.b","msg_id":"1"}`, ErrNoPayload},
		{`{"topic":"a.b","msg":null,"msg_id":"1"}`, ErrNoPayload},
		{`{"topic":"a.b","msg":[1],"msg_id":"1"}`, ErrNoPayload},
		{`{"topic":"a.` + strings.Repeat("b", 300) + `","msg":{},"msg_id":"1"}`, ErrBadTopic},
		{`{"topic":"a.b","msg":{},"msg_id":"` + strings.Repeat("1", 300) + `"}`, ErrBadTopic},
	} {
		env, err := gilmsg.ParseEnvelope([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ToAMQP(env)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.body, err, tc.want)
		}
	}
}
