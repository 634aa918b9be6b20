package trigger

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"

	zmq "github.com/pebbe/zmq4"
)

// TestTriggerThatDoesNotReadHoldsLittle: a publisher floods a trigger
// whose command runs on; what the trigger has not taken waits in its own
// queue (QueueBytes) and its SUB socket's receive queue, and then the
// trigger stops reading its connection, so the publisher cannot send
// more. With high_water_mark 0 the receive queue had no limit: 300 × 4 MB
// took a trigger to 1,174 MB.
func TestTriggerThatDoesNotReadHoldsLittle(t *testing.T) {
	const size, n = 256 << 10, 600 // unbounded, the trigger would take all 150 MB
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	// An XPUB that refuses to drop: a send waits until every subscriber
	// has room, so what it sent is what the trigger's side holds.
	pub, err := zctx.NewSocket(zmq.XPUB)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.SetLinger(0)
	pub.SetSndhwm(1)
	pub.SetXpubNodrop(true)
	pub.SetSndtimeo(2 * time.Second)
	if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := pub.GetLastEndpoint()

	cfg := gilmsg.DefaultConfig()
	cfg.Endpoints = map[string][]string{"flood": {ep}}
	cfg.SignMessages, cfg.ValidateSignatures = false, false
	cfg.HighWaterMark = 0
	bus, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	const queueBytes = 4 << 20
	tr := &Trigger{
		QueueBytes: queueBytes,
		Action: func(ctx context.Context, _ *gilmsg.Message) error {
			select { // a command that runs until the test ends
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, bus.Tail(ctx, "")) }()
	defer func() { cancel(); close(release); <-done }()

	// The subscription arrives once the tail has connected.
	if _, err := pub.RecvBytes(0); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", size)
	sent := 0
	for ; sent < n; sent++ {
		topic := fmt.Sprintf("%s.%s.flood.t", cfg.TopicPrefix, cfg.Environment)
		body := fmt.Sprintf(`{"i": %d, "msg": {"pad": %q}, "msg_id": "2026-%d", "timestamp": 1700000000, "topic": %q}`, sent, pad, sent, topic)
		if _, err := pub.SendMessage(topic, body); err != nil {
			break // no room for 2 s: the trigger's side is full
		}
	}
	// The trigger's queue, its SUB socket's (1 GiB / max_message_size
	// messages: 128), the kernel's socket buffers (a few MB) and the
	// action's message.
	most := queueBytes/size + int(gilmsg.DefaultFanoutBytes/gilmsg.DefaultMaxMessageSize) + 64
	if sent > most {
		t.Fatalf("a trigger that does not read took %d messages of %d kB (at most %d expected)", sent, size>>10, most)
	}
	t.Logf("a trigger that does not read took %d messages of %d kB", sent, size>>10)
}
