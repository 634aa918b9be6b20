package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

func TestTriggerCommand(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	out := filepath.Join(t.TempDir(), "out")
	// Every command fails: each is logged, and the next message goes on.
	_, stderr, done := startCLI(t, context.Background(), nil, "trigger", "--config", n.config,
		"--exclude", `\.skip$`, "--command", "cat >> "+out+"; exit 3")
	read := func() []string {
		b, _ := os.ReadFile(out)
		return lines(string(b))
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for i := 0; len(read()) < 2; i++ {
		topic := "tick"
		if i%2 == 1 {
			topic = "skip"
		}
		if _, err := n.pub.Publish(context.Background(), topic, map[string]any{"text": "it's '$(true)"}); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-done:
			t.Fatalf("trigger ended: %d %q", res.code, res.stderr)
		case <-tick.C:
		case <-timeout:
			t.Fatalf("no command ran twice within 10s; stderr %q", stderr.String())
		}
	}
	for _, line := range read() {
		env, err := gilmsg.ParseEnvelope([]byte(line))
		if err != nil {
			t.Fatalf("stdin line %q: %v", line, err)
		}
		if env.Topic != "org.example.dev.test.tick" {
			t.Errorf("ran for %s", env.Topic)
		}
		// What the command read is the signed envelope, intact.
		if _, err := n.pub.Validator().Validate(env); err != nil {
			t.Errorf("stdin does not validate: %v", err)
		}
	}
	if !strings.Contains(stderr.String(), "status 3") {
		t.Errorf("the failures' status is not logged: %q", stderr.String())
	}
}

func TestTriggerNeedsCommand(t *testing.T) {
	t.Parallel()
	res := runCLI(t, nil, "trigger")
	if res.code != exitUsage || !strings.Contains(res.stderr, "--command is required") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}
