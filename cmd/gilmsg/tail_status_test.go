package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/replayserver"
)

// pipeGone is a stdout whose reader has gone.
type pipeGone struct{ syncBuffer }

func (*pipeGone) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// A line that could not be written (a full disk, a closed pipe) is not
// recorded in the status file: the next run prints it.
func TestTailStatusWaitsForTheLine(t *testing.T) {
	t.Parallel()
	body := []byte(`{"i":1,"msg":{"n":1},"msg_id":"id-1","seq_id":1,"timestamp":1700000000,"topic":"org.example.dev.svc.x","username":"u"}`)
	for name, tc := range map[string]struct {
		out  textSink
		code int
	}{
		"full disk":   {&errWriter{}, exitFailure},
		"closed pipe": {&pipeGone{}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			zctx, err := zmq.NewContext()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { zctx.Term() }) // after the sockets' cleanups
			pub, _ := zctx.NewSocket(zmq.XPUB)
			t.Cleanup(func() { pub.Close() })
			pub.SetLinger(100 * time.Millisecond)
			if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
				t.Fatal(err)
			}
			addr, _ := pub.GetLastEndpoint()
			replay := oneMessageReplay(t, zctx, body)
			dir := t.TempDir()
			cfg := writeConfigJSON(t, map[string]any{
				"topic_prefix": "org.example", "environment": "dev", "validate_signatures": false,
				"endpoints": map[string][]string{"svc": {addr}}, "replay_endpoints": map[string]string{"svc": replay},
				"status_directory": dir,
			})
			done := make(chan cliResult, 1)
			go func() {
				done <- runCLIWith(t, context.Background(), nil, tc.out, &syncBuffer{}, "tail", "--config", cfg, "--json", "--no-ack")
			}()
			pub.SetRcvtimeo(20 * time.Second)
			if _, err := pub.RecvBytes(0); err != nil {
				t.Fatalf("tail did not subscribe: %v", err)
			}
			if _, err := pub.SendMessage("org.example.dev.svc.x", body); err != nil {
				t.Fatal(err)
			}
			res := waitCLI(t, done)
			if res.code != tc.code {
				t.Errorf("exit %d (stderr %q), want %d", res.code, res.stderr, tc.code)
			}
			var doc struct {
				Names map[string]struct {
					SeqID int64 `json:"seq_id"`
				} `json:"names"`
			}
			if data, err := os.ReadFile(filepath.Join(dir, "gilmsg-tail")); err == nil {
				if err := json.Unmarshal(data, &doc); err != nil {
					t.Fatal(err)
				}
				if s := doc.Names["svc"].SeqID; s != 0 {
					t.Fatalf("status file records seq_id %d, whose line was never written", s)
				}
			}
			// The next run prints it, from the replay server.
			again := runCLIWith(t, ctxFor(t), nil, &syncBuffer{}, &syncBuffer{}, "tail", "--config", cfg, "--json", "--no-ack", "--count", "1")
			if again.code != 0 || !strings.Contains(again.stdout, `"msg_id":"id-1"`) {
				t.Fatalf("restart: exit %d, stdout %q, stderr %q", again.code, again.stdout, again.stderr)
			}
		})
	}
}

// oneMessageReplay is a replay server holding one message, seq_id 1.
func oneMessageReplay(t *testing.T, zctx *zmq.Context, body []byte) string {
	t.Helper()
	rep, _ := zctx.NewSocket(zmq.REP)
	rep.SetLinger(100 * time.Millisecond)
	if err := rep.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	addr, _ := rep.GetLastEndpoint()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		defer rep.Close()
		poller := zmq.NewPoller()
		poller.Add(rep, zmq.POLLIN)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p, _ := poller.Poll(20 * time.Millisecond); len(p) == 0 {
				continue
			}
			req, err := rep.RecvBytes(0)
			if err != nil {
				continue
			}
			q, err := replayserver.ParseQuery(req)
			has := err == nil && (q.All || containsSeq(q, 1))
			if has {
				rep.SendBytes(body, 0)
			} else {
				rep.Send("error: 'There was no match for the given query'", 0)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })
	return addr
}

func containsSeq(q *gilmsg.Query, seq int64) bool {
	if q.SeqIDRange != nil && q.SeqIDRange[0] <= seq && seq <= q.SeqIDRange[1] {
		return true
	}
	for _, s := range q.SeqIDs {
		if s == seq {
			return true
		}
	}
	return false
}
