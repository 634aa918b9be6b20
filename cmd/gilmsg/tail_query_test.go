package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// What Python's fedmsg-tail prints for --query and --terse:
// testdata/tail/query-terse.jsonl, written by query_terse.py there.
func TestTailQueryAndTerseAsPython(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../testdata/tail/query-terse.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range lines(string(data)) {
		var c struct {
			Body  string
			Terse string
			Query map[string]string
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		env, err := gilmsg.ParseEnvelope([]byte(c.Body))
		if err != nil {
			continue // not an envelope this tail would print
		}
		n++
		if got := terseLine(env.Topic); got != c.Terse {
			t.Errorf("--terse of %s = %q, Python %q", c.Body, got, c.Terse)
		}
		for q, want := range c.Query {
			if got := queryLine(env.Fields(), q); got != want {
				t.Errorf("--query %q of %s\n got %q\nwant %q", q, c.Body, got, want)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d fixtures used", n)
	}
}

func TestTailQueryCommand(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	_, _, done := startCLI(t, context.Background(), nil, "tail", "--config", n.config, "--count", "1", "--query", "topic, msg.text,msg.nope")
	res := publishUntil(t, done, func(i int) {
		if _, err := n.pub.Publish(context.Background(), "tick", map[string]any{"text": "it's"}); err != nil {
			t.Errorf("publish: %v", err)
		}
	})
	if res.code != exitOK || strings.TrimSpace(res.stdout) != "org.example.dev.test.tick, it's, None" {
		t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
