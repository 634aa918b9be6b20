package gilmsg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/replaywire"

	zmq "github.com/pebbe/zmq4"
)

// The tests of gap recovery against a replay server that the test
// controls: what it holds, whether it is up, what it answers.

// fakeReplay is a replay server over an in-memory store: Go's answers
// (seq_id_range paged by replaywire.MaxReplyMessages), or Python's (every
// seq_id_range refused). answer, when set, replaces the store.
type fakeReplay struct {
	addr   string
	python bool
	reqs   atomic.Int64

	mu     sync.Mutex
	msgs   map[int64][]byte
	answer func(q *Query) [][]byte

	stop, done chan struct{}
}

// startFakeReplay serves on addr ("" for a free port).
func startFakeReplay(t *testing.T, addr string) *fakeReplay {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, _ := zctx.NewSocket(zmq.REP)
	sock.SetLinger(100 * time.Millisecond)
	if addr == "" {
		addr = "tcp://127.0.0.1:*"
	}
	if err := sock.Bind(addr); err != nil {
		t.Fatal(err)
	}
	f := &fakeReplay{msgs: map[int64][]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	f.addr, _ = sock.GetLastEndpoint()
	go func() {
		defer close(f.done)
		defer zctx.Term()
		defer sock.Close()
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			if p, _ := poller.Poll(20 * time.Millisecond); len(p) == 0 {
				continue
			}
			req, err := sock.RecvMessageBytes(0)
			if err != nil {
				continue
			}
			f.reqs.Add(1)
			parts := []any{}
			for _, fr := range f.reply(req[0]) {
				parts = append(parts, fr)
			}
			sock.SendMessage(parts...)
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeReplay) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func (f *fakeReplay) put(bodies ...[]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bodies {
		env, err := ParseEnvelope(b)
		if err != nil {
			panic(err)
		}
		seq, _ := env.SeqID()
		f.msgs[seq] = b
	}
}

// parseFakeQuery reads the keys gap recovery sends (seq_id, seq_ids,
// seq_id_range, after_seq_id), strictly: the fake is no copy of the
// replay server's parser (package replayserver), so a request the client
// gets wrong is not read the same wrong way.
func parseFakeQuery(raw []byte) (*Query, error) {
	var req struct {
		SeqID      *int64    `json:"seq_id"`
		SeqIDs     []int64   `json:"seq_ids"`
		SeqIDRange *[2]int64 `json:"seq_id_range"`
		AfterSeqID int64     `json:"after_seq_id"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return nil, err
	}
	q := &Query{SeqIDs: req.SeqIDs, SeqIDRange: req.SeqIDRange, AfterSeqID: req.AfterSeqID}
	if req.SeqID != nil {
		q.SeqIDs = append(q.SeqIDs, *req.SeqID)
	}
	q.All = q.SeqIDs == nil && q.SeqIDRange == nil
	return q, nil
}

func (f *fakeReplay) reply(raw []byte) [][]byte {
	q, err := parseFakeQuery(raw)
	if err != nil {
		return [][]byte{[]byte(replaywire.ErrPrefix + "'" + err.Error() + "'")}
	}
	if f.python && q.SeqIDRange != nil {
		return [][]byte{[]byte(replaywire.ErrPrefix + "'Something went wrong when processing the field \"seq_id_range\"'")}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answer != nil {
		return f.answer(q)
	}
	var seqs []int64
	for seq := range f.msgs {
		if q.AfterSeqID != 0 && seq <= q.AfterSeqID {
			continue
		}
		if slices.Contains(q.SeqIDs, seq) || (q.SeqIDRange != nil && seq >= q.SeqIDRange[0] && seq <= q.SeqIDRange[1]) {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	if !f.python && len(seqs) > replaywire.MaxReplyMessages {
		seqs = seqs[:replaywire.MaxReplyMessages]
	}
	if len(seqs) == 0 {
		return [][]byte{[]byte(replaywire.ErrPrefix + "'" + replaywire.NoMatch + "'")}
	}
	var out [][]byte
	for _, seq := range seqs {
		out = append(out, f.msgs[seq])
	}
	return out
}

// seqPub is a publisher's socket that sends bodies as given.
type seqPub struct {
	sock *zmq.Socket
	addr string
}

func newSeqPub(t *testing.T) *seqPub {
	t.Helper()
	sock, addr := rawBound(t, zmq.XPUB)
	return &seqPub{sock: sock, addr: addr}
}

// waitSubscribed waits for a subscription to reach the socket.
func (p *seqPub) waitSubscribed(t *testing.T) {
	t.Helper()
	p.sock.SetRcvtimeo(20 * time.Second)
	if _, err := p.sock.RecvBytes(0); err != nil {
		t.Fatalf("no subscriber came: %v", err)
	}
}

func (p *seqPub) send(t *testing.T, bodies ...[]byte) {
	t.Helper()
	for _, b := range bodies {
		env, err := ParseEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.sock.SendMessage(env.Topic, b); err != nil {
			t.Fatal(err)
		}
	}
}

// seqBody is an unsigned message of publisher "svc" with seq_id seq.
func seqBody(seq int64, id string) []byte {
	return fmt.Appendf(nil, `{"i":1,"msg":{"n":%d},"msg_id":%q,"seq_id":%d,"timestamp":1700000000,"topic":"org.example.dev.svc.x","username":"u"}`, seq, id, seq)
}

func seqBodies(from, to int64) [][]byte {
	var out [][]byte
	for seq := from; seq <= to; seq++ {
		out = append(out, seqBody(seq, fmt.Sprintf("id-%d", seq)))
	}
	return out
}

// replaySub is a subscription to pub, whose replay server is at replayAddr.
func replaySub(t *testing.T, pub *seqPub, replayAddr string, opts ...SubscribeOption) (*Bus, *Subscription) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.TopicPrefix, cfg.Environment = "org.example", "dev"
	cfg.Endpoints = map[string][]string{"svc": {pub.addr}}
	cfg.ReplayEndpoints = map[string]string{"svc": replayAddr}
	cfg.ValidateSignatures = false
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	sub, err := b.Subscribe(t.Context(), "", append([]SubscribeOption{WithReplayTimeout(300 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return b, sub
}

// item is what one Next returned.
type item struct {
	m   *Message
	err error
}

func (it item) seq() int64 {
	if it.m == nil {
		return -1
	}
	seq, _ := it.m.SeqID()
	return seq
}

// nextItem reads one item with a generous deadline, from a goroutine, so
// that a Next that never returns fails the test instead of hanging it.
func nextItem(t *testing.T, sub *Subscription) item {
	t.Helper()
	ch := make(chan item, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		m, err := sub.Next(ctx)
		ch <- item{m, err}
	}()
	select {
	case it := <-ch:
		if errors.Is(it.err, context.DeadlineExceeded) {
			t.Fatal("nothing came")
		}
		return it
	case <-time.After(25 * time.Second):
		t.Fatal("Next is stuck")
	}
	return item{}
}

// wantSeqs reads messages, skipping gaps, until it has len(want) of them,
// and checks their seq_ids in order.
func wantSeqs(t *testing.T, sub *Subscription, want ...int64) []*GapError {
	t.Helper()
	var gaps []*GapError
	var got []int64
	for len(got) < len(want) {
		it := nextItem(t, sub)
		var gap *GapError
		if errors.As(it.err, &gap) {
			gaps = append(gaps, gap)
			continue
		}
		if it.err != nil {
			t.Fatalf("after %v: %v", got, it.err)
		}
		got = append(got, it.seq())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seq_ids %v, want %v", got, want)
	}
	return gaps
}

func readStatusDoc(t *testing.T, path string) statusEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc statusDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Names["svc"]
}

// Case 1: a message counts as delivered once handled (here: WithManualAck and
// Ack or AckAsync), not once taken off the queue; the restart yields what
// was not.
func TestCheckpointIsDelivery(t *testing.T) {
	for name, ack := range map[string]func(*Message, context.Context) error{"Ack": (*Message).Ack, "AckAsync": (*Message).AckAsync} {
		t.Run(name, func(t *testing.T) { checkpointIsDelivery(t, ack) })
	}
}

func checkpointIsDelivery(t *testing.T, ack func(*Message, context.Context) error) {
	srv := startFakeReplay(t, "")
	srv.put(seqBodies(1, 3)...)
	pub := newSeqPub(t)
	status := filepath.Join(t.TempDir(), "status")
	_, sub := replaySub(t, pub, srv.addr, WithManualAck(), WithStatusFile(status))
	pub.waitSubscribed(t)
	pub.send(t, seqBodies(1, 3)...)
	for want := int64(1); want <= 3; want++ {
		it := nextItem(t, sub)
		if it.err != nil || it.seq() != want {
			t.Fatalf("got %d %v, want %d", it.seq(), it.err, want)
		}
		if want < 3 {
			if err := ack(it.m, t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// As a killed process leaves it (file and journal), and once closed.
	if st, err := loadStatus(status); err != nil || st.names["svc"].top != 2 {
		t.Fatalf("status after a kill: %v, want seq_id 2 delivered (3 was yielded, never handled)", err)
	}
	sub.Close()
	if e := readStatusDoc(t, status); e.SeqID != 2 {
		t.Fatalf("status file says seq_id %d was delivered; 3 was yielded, never handled", e.SeqID)
	}
	_, sub = replaySub(t, newSeqPub(t), srv.addr, WithStatusFile(status))
	wantSeqs(t, sub, 3)
}

// Case 2: a gap met while the replay server is down is asked for again,
// with backoff, while the subscription runs (without any live message to
// prompt it) and after a restart, from the holes in the status file.
func TestGapAskedAgainUntilFilled(t *testing.T) {
	addr := "tcp://127.0.0.1:" + freeTCPPort(t)
	pub := newSeqPub(t)
	status := filepath.Join(t.TempDir(), "status")
	_, sub := replaySub(t, pub, addr, WithStatusFile(status))
	pub.waitSubscribed(t)
	pub.send(t, seqBody(1, "id-1"), seqBody(5, "id-5"))
	wantSeqs(t, sub, 1)
	it := nextItem(t, sub)
	var gap *GapError
	if !errors.As(it.err, &gap) || gap.From != 2 || gap.To != 4 || gap.GivenUp || !errors.Is(it.err, ErrReplayTimeout) {
		t.Fatalf("want GapError 2..4 for a server that does not answer, got %v", it.err)
	}
	wantSeqs(t, sub, 5)

	// While running: the server comes up, and 2..4 come, late.
	srv := startFakeReplay(t, addr)
	srv.put(seqBodies(1, 8)...)
	wantSeqs(t, sub, 2, 3, 4)

	// Down again; a gap; a restart: the status file keeps the hole.
	srv.close()
	pub.send(t, seqBody(8, "id-8"))
	wantSeqs(t, sub, 8)
	sub.Close()
	if e := readStatusDoc(t, status); e.SeqID != 8 || len(e.Holes) != 1 || e.Holes[0][0] != 6 || e.Holes[0][1] != 7 {
		t.Fatalf("status file: %+v, want seq_id 8 with 6..7 missing", e)
	}
	srv = startFakeReplay(t, addr)
	srv.put(seqBodies(1, 8)...)
	_, sub = replaySub(t, newSeqPub(t), addr, WithStatusFile(status))
	wantSeqs(t, sub, 6, 7)
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	a := deadAddr(t)
	return a[strings.LastIndex(a, ":")+1:]
}

// Case 3: a catch-up page that lacks a seq_id (another process took it
// and had not committed it) remembers it: the live copy is yielded, not
// dropped as already seen. The status file is in version 1's format.
func TestCatchUpRacingLive(t *testing.T) {
	srv := startFakeReplay(t, "")
	srv.put(seqBody(4, "id-4"), seqBody(5, "id-5"), seqBody(7, "id-7"))
	status := filepath.Join(t.TempDir(), "status")
	os.WriteFile(status, []byte(`{"version":1,"names":{"svc":{"seq_id":3,"timestamp":0}}}`), 0o644)
	pub := newSeqPub(t)
	_, sub := replaySub(t, pub, srv.addr, WithStatusFile(status))
	wantSeqs(t, sub, 4, 5, 7)
	pub.waitSubscribed(t)
	pub.send(t, seqBody(6, "id-6"), seqBody(8, "id-8"))
	wantSeqs(t, sub, 6, 8)
}

// Case 4: seq_ids going back (a publisher restarted over a fresh store)
// start a new run: its messages are delivered, copies still dropped.
func TestSeqIDsGoBack(t *testing.T) {
	for _, dedupe := range []int{4096, 0} {
		t.Run(fmt.Sprint("dedupe", dedupe), func(t *testing.T) {
			srv := startFakeReplay(t, "")
			pub := newSeqPub(t)
			b, sub := replaySub(t, pub, srv.addr, WithDedupe(dedupe))
			pub.waitSubscribed(t)
			pub.send(t, seqBody(1, "a"), seqBody(2, "b"), seqBody(3, "c"))
			pub.send(t, seqBody(1, "d"), seqBody(2, "e"), seqBody(2, "e"), seqBody(3, "f"))
			var ids []string
			for len(ids) < 6 {
				it := nextItem(t, sub)
				if it.err != nil {
					t.Fatal(it.err)
				}
				ids = append(ids, it.m.MsgID)
			}
			if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(ids, want) {
				t.Fatalf("yielded %v, want %v", ids, want)
			}
			if st := b.Stats(); st.SeqResets != 1 || st.Duplicates != 1 {
				t.Errorf("SeqResets %d, Duplicates %d; want 1 and 1", st.SeqResets, st.Duplicates)
			}
		})
	}
}

// WithDedupe(0): no msg_id memory, yet a resend (same seq_id, same msg_id)
// is dropped by name and seq_id.
func TestDedupeBySeqIDWithoutMsgIDs(t *testing.T) {
	srv := startFakeReplay(t, "")
	pub := newSeqPub(t)
	b, sub := replaySub(t, pub, srv.addr, WithDedupe(0))
	pub.waitSubscribed(t)
	pub.send(t, seqBody(1, "a"), seqBody(2, "b"), seqBody(2, "b"), seqBody(1, "a"), seqBody(3, "c"))
	wantSeqs(t, sub, 1, 2, 3)
	if d := b.Stats().Duplicates; d != 2 {
		t.Errorf("Duplicates %d, want 2", d)
	}
}

// Case 4: a status file with values no subscription could have written
// is refused, naming the file.
func TestStatusFileRefusesAbsurdValues(t *testing.T) {
	for name, content := range map[string]string{
		"max int64": `{"version":1,"names":{"svc":{"seq_id":9223372036854775807,"timestamp":0}}}`,
		"negative":  `{"version":1,"names":{"svc":{"seq_id":-5,"timestamp":0}}}`,
		"garbage":   `{"version":1,"names":{"svc":{"seq_id":"x"}}}`,
		"not json":  "\x00\x01",
		"holes":     `{"version":2,"names":{"svc":{"seq_id":10,"holes":[[5,6,0],[2,3,0]]}}}`,
		"hole past": `{"version":2,"names":{"svc":{"seq_id":10,"holes":[[5,60,0]]}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			status := filepath.Join(t.TempDir(), "status")
			os.WriteFile(status, []byte(content), 0o644)
			cfg := DefaultConfig()
			cfg.Endpoints = map[string][]string{"svc": {deadAddr(t)}}
			cfg.ReplayEndpoints = map[string]string{"svc": deadAddr(t)}
			b, err := New(cfg, WithReadyTimeout(10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			sub, err := b.Subscribe(t.Context(), "", WithStatusFile(status))
			if err == nil {
				sub.Close()
				t.Fatal("Subscribe took it")
			}
			if !strings.Contains(err.Error(), status) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// Case 5: a jump to 2^62 costs a bounded number of requests, blocks
// nothing, and the publisher's real seq_ids still come through.
func TestHugeSeqJump(t *testing.T) {
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprint("server up ", up), func(t *testing.T) {
			srv := startFakeReplay(t, "")
			addr := srv.addr
			if !up {
				srv.close()
				addr = deadAddr(t)
			}
			pub := newSeqPub(t)
			_, sub := replaySub(t, pub, addr)
			pub.waitSubscribed(t)
			pub.send(t, seqBody(1, "a"), seqBody(1<<62, "forged"), seqBody(2, "b"), seqBody(3, "c"))
			wantSeqs(t, sub, 1, 1<<62, 2, 3)
			if n := srv.reqs.Load(); n > 10 {
				t.Errorf("%d replay requests for one jump", n)
			}
			// Waiting on the next message, it still answers its context.
			ctx, cancel := context.WithCancel(t.Context())
			go func() { time.Sleep(50 * time.Millisecond); cancel() }()
			if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Next: %v", err)
			}
		})
	}
}

// Case 8: an answer past the frame bound is an error saying so, not
// "no answer".
func TestReplayAnswerBounded(t *testing.T) {
	srv := startFakeReplay(t, "")
	srv.answer = func(*Query) [][]byte {
		out := seqBodies(1, replaywire.MaxReplyMessages+1)
		return out
	}
	pub := newSeqPub(t)
	_, sub := replaySub(t, pub, srv.addr)
	pub.waitSubscribed(t)
	pub.send(t, seqBody(1, "id-1"), seqBody(3, "id-3"))
	wantSeqs(t, sub, 1)
	it := nextItem(t, sub)
	if !errors.Is(it.err, ErrGap) || !errors.Is(it.err, ErrReplayTooLarge) {
		t.Fatalf("want a gap with ErrReplayTooLarge, got %v", it.err)
	}
	wantSeqs(t, sub, 3)
}

// A replayed message that fails validation is never yielded nor ACKed;
// the gap says why (a ValidationError), and the rejection is counted.
func TestReplayedInvalidNeverYieldedOrAcked(t *testing.T) {
	pki := testPKI(t)
	signer, err := LoadSigner(pki.Dir, testPKIHosts[0])
	if err != nil {
		t.Fatal(err)
	}
	signed := func(seq int64, tamper bool) []byte {
		f := map[string]any{"topic": "org.example.dev.svc.x", "msg": map[string]any{"n": seq}, "msg_id": fmt.Sprint("id-", seq),
			"seq_id": seq, "timestamp": 1700000000, "i": 1, "username": "u", "gilmsg_version": ProtocolVersion}
		if err := signer.Sign(f); err != nil {
			t.Fatal(err)
		}
		if tamper {
			f["msg"] = map[string]any{"n": 666}
		}
		b, err := MarshalCanonical(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srv := startFakeReplay(t, "")
	srv.put(signed(1, false), signed(2, true), signed(3, false))
	pub := newSeqPub(t)
	cfg := pki.Config()
	cfg.Name = testPKIHosts[1]
	cfg.Endpoints = map[string][]string{"svc": {pub.addr}, cfg.Name: {"tcp://127.0.0.1:*"}}
	cfg.ReplayEndpoints = map[string]string{"svc": srv.addr}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub, err := b.Subscribe(t.Context(), "org.example.dev.svc")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub.waitSubscribed(t)
	pub.send(t, signed(1, false), signed(3, false))
	wantSeqs(t, sub, 1)
	it := nextItem(t, sub)
	var ve *ValidationError
	var gap *GapError
	if !errors.As(it.err, &gap) || gap.From != 2 || gap.To != 2 || !errors.As(it.err, &ve) {
		t.Fatalf("want GapError 2..2 carrying a ValidationError, got %v", it.err)
	}
	wantSeqs(t, sub, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if it, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("then %v %v, want nothing", it, err)
	}
	sub.Close()
	if st := b.Stats(); st.AcksSent != 2 || st.Invalid[ReasonSignature]+st.Invalid[ReasonMalformed] == 0 {
		t.Fatalf("AcksSent %d (want 2: only 1 and 3), Invalid %v", st.AcksSent, st.Invalid)
	}
}

// Case 7: a catch-up holds one page at a time, whatever the backlog: the
// live heap while it runs stays below what the backlog takes.
func TestCatchUpPagesFlatMemory(t *testing.T) {
	n, size := int64(4000), 4<<10
	if os.Getenv("GILMSG_LONG") != "" {
		n, size = 20000, 8<<10
	}
	pad := strings.Repeat("x", size)
	srv := startFakeReplay(t, "")
	srv.answer = func(q *Query) [][]byte {
		lo, hi := int64(1), n
		if q.SeqIDRange != nil {
			lo, hi = max(lo, q.SeqIDRange[0]), min(hi, q.SeqIDRange[1])
		}
		var out [][]byte
		for seq := lo; seq <= hi && len(out) < replaywire.MaxReplyMessages; seq++ {
			b := append([]byte(`{"msg":{"pad":"`), pad...)
			out = append(out, fmt.Appendf(b, `"},"msg_id":"id-%d","seq_id":%d,"timestamp":1,"topic":"org.example.dev.svc.x"}`, seq, seq))
		}
		if len(out) == 0 {
			return [][]byte{[]byte(replaywire.ErrPrefix + "'" + replaywire.NoMatch + "'")}
		}
		return out
	}
	status := filepath.Join(t.TempDir(), "status")
	os.WriteFile(status, []byte(`{"version":1,"names":{"svc":{"seq_id":0,"timestamp":0}}}`), 0o644)
	live := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := live()
	_, sub := replaySub(t, newSeqPub(t), srv.addr, WithStatusFile(status), WithReplayTimeout(10*time.Second))
	var peak uint64
	for seq := int64(1); seq <= n; seq++ {
		it := nextItem(t, sub)
		if it.err != nil || it.seq() != seq {
			t.Fatalf("got %d %v, want %d", it.seq(), it.err, seq)
		}
		if seq%500 == 0 {
			peak = max(peak, live())
		}
	}
	grew := int64(peak) - int64(base)
	backlog := n * int64(len(pad))
	t.Logf("catch-up of %d messages of %d kB: live heap %d MB before, peak %d MB (+%d MB); the backlog is %d MB",
		n, len(pad)>>10, base>>20, peak>>20, grew>>20, backlog>>20)
	if grew > backlog/2 {
		t.Fatalf("the heap grew by %d MB for a backlog of %d MB", grew>>20, backlog>>20)
	}
}

// Case 10: a publisher that stored a message and died before sending it;
// the running subscription gets it from the store once the publisher's
// connection drops, with no further message from it.
func TestStoredButUnsentReachesTail(t *testing.T) {
	srv := startFakeReplay(t, "")
	pub := newSeqPub(t)
	_, sub := replaySub(t, pub, srv.addr)
	pub.waitSubscribed(t)
	srv.put(seqBodies(1, 2)...)
	pub.send(t, seqBody(1, "id-1"))
	wantSeqs(t, sub, 1)
	pub.sock.Close() // dies with 2 stored and not sent
	wantSeqs(t, sub, 2)
}

// The give-up policy: past WithGapMaxAge a hole is no longer asked for; a
// GapError with GivenUp says so, Stats counts it, and the status file
// forgets it (a restart does not ask again).
func TestGapGivenUpAfterMaxAge(t *testing.T) {
	pub := newSeqPub(t)
	status := filepath.Join(t.TempDir(), "status")
	b, sub := replaySub(t, pub, deadAddr(t), WithStatusFile(status), WithGapMaxAge(time.Second))
	pub.waitSubscribed(t)
	pub.send(t, seqBody(1, "id-1"), seqBody(4, "id-4"))
	wantSeqs(t, sub, 1)
	for _, givenUp := range []bool{false, true} {
		it := nextItem(t, sub)
		var gap *GapError
		if !errors.As(it.err, &gap) || gap.From != 2 || gap.To != 3 || gap.GivenUp != givenUp {
			t.Fatalf("want GapError 2..3 given up %v, got %v", givenUp, it.err)
		}
		if givenUp && !strings.Contains(it.err.Error(), "given up") {
			t.Errorf("the error does not say so: %v", it.err)
		}
		if !givenUp {
			wantSeqs(t, sub, 4)
		}
	}
	if n := b.Stats().GapsGivenUp; n != 1 {
		t.Errorf("GapsGivenUp %d, want 1", n)
	}
	sub.Close()
	if e := readStatusDoc(t, status); e.SeqID != 4 || len(e.Holes) != 0 {
		t.Fatalf("status file %+v, want seq_id 4 and nothing missing", e)
	}
}

// A publisher that restarts takes its replay server down with it: the ask
// that its dropped connection starts cannot be answered then. That is no
// evidence of loss, so no GapError: a message really missed shows as a
// hole when the publisher's next live message comes, and is asked for then.
func TestDroppedPublisherWithItsReplayServerNoGap(t *testing.T) {
	pub := newSeqPub(t)
	_, sub := replaySub(t, pub, deadAddr(t))
	pub.waitSubscribed(t)
	pub.send(t, seqBody(1, "id-1"))
	wantSeqs(t, sub, 1)
	pub.sock.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // 10 replay timeouts
	defer cancel()
	if m, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the publisher left: %v, %v; want nothing", m, err)
	}
}
