package sqlstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// lockedBuffer is a log sink the server's goroutine writes to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// TestReplayRefusalQuotesLittle: an error frame and its log line quote a
// short prefix of what the client sent. 50 requests with a 1 MB unknown
// key wrote 50 MB to stderr, and each answer echoed the key.
func TestReplayRefusalQuotesLittle(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"pub": "tcp://127.0.0.1:*"}
	var logs lockedBuffer
	srv, err := gilmsg.NewReplayServer(cfg, "pub", st, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })

	const n = 5
	for _, req := range []string{
		`{"` + strings.Repeat("k", 1_000_000) + `": 1}`,
		`{"seq_ids": [1], "` + strings.Repeat("é", 400_000) + `": 1}`,
	} {
		for range n {
			reply := ask(t, srv.Endpoint(), []byte(req))
			if len(reply) != 1 || !bytes.HasPrefix(reply[0], []byte("error: ")) {
				t.Fatalf("reply: %d frames, %.100q", len(reply), reply[0])
			}
			if len(reply[0]) > 200 {
				t.Fatalf("error frame of %d bytes: %.300q", len(reply[0]), reply[0])
			}
		}
	}
	if logs.Len() > 2*n*500 {
		t.Fatalf("%d bytes of logs for %d refused requests", logs.Len(), 2*n)
	}
}
