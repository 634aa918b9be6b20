package gilmsg

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// TestPublishThenCloseLosesNothing: a program that publishes and then
// closes its bus, with no sleep, and exits, delivers every message to a
// subscriber that was waiting for it: Close returns once the queue has
// left (bounded by zmq_linger). The program is this test binary run again.
func TestPublishThenCloseLosesNothing(t *testing.T) {
	ep := "tcp://127.0.0.1:" + freePort(t)
	sub, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetSubscribe("")
	sub.SetRcvtimeo(200 * time.Millisecond)
	if err := sub.Connect(ep); err != nil {
		t.Fatal(err)
	}
	const n = 50
	cmd := exec.Command(os.Args[0], "-test.run=^TestPublishThenCloseChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GILMSG_TEST_CHILD_ENDPOINT="+ep)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("publishing program: %v\n%s", err, out)
	}
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		frames, err := sub.RecvMessage(0)
		if err != nil {
			continue
		}
		got = append(got, frames[0])
	}
	if len(got) != n {
		t.Fatalf("received %d of the %d messages a program published before Close and exit", len(got), n)
	}
	if !strings.HasSuffix(got[0], ".close.test") {
		t.Fatalf("topic %q", got[0])
	}
}

// TestPublishThenCloseChild is the publishing program of
// TestPublishThenCloseLosesNothing.
func TestPublishThenCloseChild(t *testing.T) {
	ep := os.Getenv("GILMSG_TEST_CHILD_ENDPOINT")
	if ep == "" {
		t.Skip("run by TestPublishThenCloseLosesNothing")
	}
	cfg := DefaultConfig()
	cfg.Name = "closer"
	cfg.Endpoints = map[string][]string{"closer": {ep}}
	cfg.SignMessages = false
	b, err := New(cfg, WithModname("close"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := b.Publish(context.Background(), "test", map[string]any{"i": i, "pad": strings.Repeat("x", 64<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
