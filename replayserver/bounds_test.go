package replayserver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/replaywire"
	"github.com/gilmsg/gilmsg-go/internal/testenv"

	zmq "github.com/pebbe/zmq4"
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
	st := &memStore{msgs: stored(3)}
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"pub": "tcp://127.0.0.1:*"}
	var logs lockedBuffer
	srv, err := New(cfg, "pub", st, slog.New(slog.NewTextHandler(&logs, nil)))
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
			reply := testenv.ReplayAsk(t, srv.Endpoint(), []byte(req))
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

// TestReplayClientThatDoesNotRead: a client that sends requests and never
// reads its answers gets only what fits its small queue; the rest of its
// answers are dropped, and another client is still served. 1,000 of {}
// took the server to 2.26 GB when its REP socket queued every answer.
func TestReplayClientThatDoesNotRead(t *testing.T) {
	big := strings.Repeat("z", 16<<10)
	st := &memStore{}
	for i := range 20 {
		st.msgs = append(st.msgs, fmt.Appendf(nil, `{"msg": {"i": %d, "pad": %q}, "seq_id": %d, "topic": "org.example.dev.pub.stored"}`, i, big, i+1))
	}
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"pub": "tcp://127.0.0.1:*"}
	srv, err := New(cfg, "pub", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var answered atomic.Int64
	srv.SetHooks(&gilmsg.Hooks{ReplayRequest: func(bool) { answered.Add(1) }})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })

	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	stuck, err := zctx.NewSocket(zmq.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.SetLinger(100 * time.Millisecond)
	stuck.SetRcvhwm(1) // as little as its library can keep for it
	stuck.SetRcvbuf(64 << 10)
	if err := stuck.Connect(srv.Endpoint()); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for range n {
		if _, err := stuck.SendMessage("", "{}"); err != nil {
			t.Fatal(err)
		}
	}
	// Each answer is 330 kB: the kernel's buffers hold a few, the
	// server's queue two, and the rest is dropped.
	deadline := time.Now().Add(30 * time.Second)
	for srv.DroppedReplies() < n-50 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests answered, %d dropped for a client that reads none: the rest are queued",
				answered.Load(), n, srv.DroppedReplies())
		}
		time.Sleep(10 * time.Millisecond)
	}
	reply := testenv.ReplayAsk(t, srv.Endpoint(), []byte(`{"seq_id": 3}`))
	if len(reply) != 1 || bytes.HasPrefix(reply[0], []byte("error")) {
		t.Fatalf("the other client got %d frames: %.100q", len(reply), reply[0])
	}
}

// TestReplayAnswerBytesBounded: an answer stops once it reaches
// FullReplyBytes, however few messages that is, and the rest comes with
// after_seq_id. Bounded only in messages, 1,000 stored messages of 8 MiB
// made an answer of 8 GB, two of which the server queued for a client
// that does not read; the root's recovery refuses any over 64 MiB.
func TestReplayAnswerBytesBounded(t *testing.T) {
	const n, size = 40, 1 << 20
	pad := strings.Repeat("z", size)
	st := &memStore{}
	for i := range n {
		st.msgs = append(st.msgs, fmt.Appendf(nil, `{"msg": {"i": %d, "pad": %q}, "seq_id": %d, "topic": "t"}`, i, pad, i+1))
	}
	srv := newServer(t, st)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })
	first := testenv.ReplayAsk(t, srv.Endpoint(), []byte(`{}`))
	total := 0
	for _, f := range first {
		total += len(f)
	}
	if len(first) >= n || total < FullReplyBytes || total >= 2*FullReplyBytes {
		t.Fatalf("answer of %d messages, %d bytes; want fewer than %d, from %d bytes to below %d",
			len(first), total, n, FullReplyBytes, 2*FullReplyBytes)
	}
	if !replaywire.Full(len(first), total) {
		t.Fatalf("an answer of %d messages, %d bytes does not make the asker page on", len(first), total)
	}
	rest := testenv.ReplayAsk(t, srv.Endpoint(), fmt.Appendf(nil, `{"after_seq_id": %d}`, len(first)))
	if len(first)+len(rest) != n || !bytes.Contains(rest[len(rest)-1], fmt.Appendf(nil, `"seq_id":%d`, n)) {
		t.Fatalf("pages of %d and %d messages, want %d in all, the last ending with seq_id %d", len(first), len(rest), n, n)
	}
}
