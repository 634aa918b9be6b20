package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// askReplay sends one request and returns the reply, or nil when none
// came within a short wait (the server may not be up yet).
func askReplay(t *testing.T, endpoint, req string) [][]byte {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	sock, _ := zctx.NewSocket(zmq.REQ)
	defer sock.Close()
	sock.SetLinger(sendLinger)
	sock.SetRcvtimeo(500 * time.Millisecond)
	sock.Connect(endpoint)
	if _, err := sock.Send(req, 0); err != nil {
		t.Fatal(err)
	}
	reply, err := sock.RecvMessageBytes(0)
	if err != nil {
		return nil
	}
	return reply
}

// TestStoreReplayAndCatchUp: two runs of logger store their messages in
// persistent_store with seq_ids that go on from one process to the next;
// replay-server serves them; a tail whose status file says it saw seq_id 1
// prints seq_id 2 at start, without live traffic, and records it.
func TestStoreReplayAndCatchUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := gilmsg.DefaultConfig()
	cfg.TopicPrefix = "org.example"
	cfg.Name = "pub"
	cfg.Endpoints = map[string][]string{"pub": {"tcp://127.0.0.1:*"}}
	cfg.ReplayEndpoints = map[string]string{"pub": freePort(t)}
	cfg.PersistentStore = "sqlite:///" + filepath.Join(dir, "store.db")
	cfg.StatusDirectory = dir
	cfg.ValidateSignatures = false
	conf := writeConfig(t, cfg)

	for i, msg := range []string{`{"n": 1}`, `{"n": 2}`} {
		if r := runCLI(t, nil, "--config", conf, "logger", "--name", "pub", "--message", msg); r.code != 0 {
			t.Fatalf("logger run %d: %d %s", i+1, r.code, r.stderr)
		}
	}
	st, err := sqlstore.Open(context.Background(), cfg.StoreURL())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.Query(context.Background(), &gilmsg.Query{All: true})
	st.Close()
	if err != nil || len(stored) != 2 || stored[0].SeqID != 1 || stored[1].SeqID != 2 {
		t.Fatalf("store after two runs: %d messages, %v", len(stored), err)
	}

	_, serverErr, _ := startCLI(t, context.Background(), nil, "--config", conf, "replay-server")
	deadline := time.Now().Add(30 * time.Second)
	for askReplay(t, cfg.ReplayEndpoints["pub"], `{"seq_id_range": [1, 2]}`) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("replay-server never answered: %s", serverErr.String())
		}
	}
	if got := askReplay(t, cfg.ReplayEndpoints["pub"], `not json`); len(got) != 1 || !strings.HasPrefix(string(got[0]), "error: ") {
		t.Fatalf("a request that is not JSON: %q", got)
	}

	status := filepath.Join(dir, "gilmsg-tail")
	os.WriteFile(status, []byte(`{"version": 1, "names": {"pub": {"seq_id": 1, "timestamp": 0}}}`), 0o644)
	tailCfg := *cfg
	tailCfg.Name = ""
	tailCfg.PersistentStore = nil
	tailCfg.Endpoints = map[string][]string{"pub": {freePort(t)}} // nobody there: no live traffic
	r := runCLI(t, nil, "--config", writeConfig(t, &tailCfg), "tail", "--json", "--count", "1")
	if r.code != 0 || !strings.Contains(r.stdout, `{\"n\": 2}`) || !strings.Contains(r.stdout, `"seq_id":2`) {
		t.Fatalf("tail after its status file: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(status)
	if !strings.Contains(string(data), `"seq_id": 2`) {
		t.Fatalf("status file after the tail: %s", data)
	}
}
