package sqlstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
	"github.com/gilmsg/gilmsg-go/replayserver"
	zmq "github.com/pebbe/zmq4"
)

// startReplay serves st as name's replay server on a free port.
func startReplay(t *testing.T, name string, st gilmsg.Store) *replayserver.Server {
	t.Helper()
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{name: "tcp://127.0.0.1:*"}
	srv, err := replayserver.New(cfg, name, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(context.Background()) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return srv
}

type pyAnswer struct {
	Query  string   `json:"query"`
	Frames []string `json:"frames"`
}

func pythonAnswers(t *testing.T) []pyAnswer {
	t.Helper()
	f, err := os.Open("testdata/replay/python-answers.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []pyAnswer
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a pyAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// TestReplayServerMatchesPython: over the SQLite file Python's SqlStore
// wrote, the Go server gives Python's ReplayContext's answers frame for
// frame, except where Python's are faults (WIRE.md §11), and answers what
// kills Python's server.
func TestReplayServerMatchesPython(t *testing.T) {
	st := openStore(t, "sqlite:///"+copyFixture(t))
	srv := startReplay(t, "pyrep", st)
	answers := pythonAnswers(t)
	var all []string
	for _, a := range answers {
		if a.Query == "{}" {
			all = a.Frames
		}
	}
	if len(all) != 6 {
		t.Fatalf("fixture: Python's answer to {} has %d frames", len(all))
	}
	// Where Python is wrong, what the Go server answers instead.
	better := map[string][]string{
		`{"bogus": 1}`:             {`error: 'Unsupported field: "bogus"'`},      // Python never fills in the key
		`{"seq_id_range": 3}`:      {`error: 'Ill-format "seq_id_range" field'`}, // Python says "sed_id_range"
		`{"seq_id_range": [2, 4]}`: {all[1], all[2], all[3]},                     // Python always fails ranges
	}
	for _, a := range answers {
		want := a.Frames
		if b, ok := better[a.Query]; ok {
			want = b
		}
		var got []string
		for _, f := range testenv.ReplayAsk(t, srv.Endpoint(), []byte(a.Query)) {
			got = append(got, string(f))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %.300q\nwant %.300q", a.Query, got, want)
		}
	}

	// What Python's server dies of, or answers with nothing useful.
	many, _ := json.Marshal(map[string]any{"seq_ids": make([]int, replayserver.MaxQueryIDs+1)})
	manyMsgIDs, _ := json.Marshal(map[string]any{"msg_ids": make([]string, replayserver.MaxQueryIDs+1)})
	for _, c := range []struct {
		frames [][]byte
		want   string
	}{
		{[][]byte{[]byte("not json")}, "error: 'Request is not JSON"},
		{[][]byte{[]byte(`[1, 2]`)}, "error: 'Request is a JSON array, not an object'"},
		{[][]byte{[]byte(`{"seq_ids": [true]}`)}, `error: 'Something went wrong when processing the field "seq_ids"'`},
		{[][]byte{[]byte(`{"time": ["a", "b"]}`)}, `error: 'Something went wrong when processing the field "time"'`},
		{[][]byte{[]byte(`{"time": [0, 1e300]}`)}, `error: 'Something went wrong when processing the field "time"'`},
		{[][]byte{many}, "error: 'Too many seq_ids"},
		{[][]byte{manyMsgIDs}, "error: 'Too many msg_ids"},
		{[][]byte{[]byte(`{}`), []byte(`{}`)}, "error: 'A request is one frame, got 2'"},
		{[][]byte{[]byte("\xff\xfe")}, "error: 'Request is not JSON"},
	} {
		got := testenv.ReplayAsk(t, srv.Endpoint(), c.frames...)
		if len(got) != 1 || !strings.HasPrefix(string(got[0]), c.want) {
			t.Errorf("%.60q: got %.200q, want one frame starting %q", c.frames, got, c.want)
		}
	}
	// Still serving after all that.
	if got := testenv.ReplayAsk(t, srv.Endpoint(), []byte(`{"seq_id": 6}`)); len(got) != 1 || string(got[0]) != all[5] {
		t.Fatalf("after bad requests: %.200q", got)
	}
}

// TestReplayPaging: a reply holds at most MaxReplyMessages; after_seq_id
// gets the rest.
func TestReplayPaging(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil)
	n := replayserver.MaxReplyMessages + 5
	publishN(t, b, n, 16)
	srv := startReplay(t, "pub", st)
	first := testenv.ReplayAsk(t, srv.Endpoint(), []byte(`{"seq_id_range": [1, 100000]}`))
	if len(first) != replayserver.MaxReplyMessages {
		t.Fatalf("first page: %d frames", len(first))
	}
	env, err := gilmsg.ParseEnvelope(first[len(first)-1])
	if err != nil {
		t.Fatal(err)
	}
	last, _ := env.SeqID()
	rest := testenv.ReplayAsk(t, srv.Endpoint(), fmt.Appendf(nil, `{"seq_id_range": [1, 100000], "after_seq_id": %d}`, last))
	if len(rest) != 5 {
		t.Fatalf("second page: %d frames", len(rest))
	}
	env, _ = gilmsg.ParseEnvelope(rest[4])
	if s, _ := env.SeqID(); s != int64(n) {
		t.Fatalf("last message of the second page has seq_id %d, want %d", s, n)
	}
}

// fakePython is a publisher socket that sends bodies as Python sent them.
type fakePython struct {
	zctx *zmq.Context
	sock *zmq.Socket
	addr string
}

func newFakePython(t *testing.T) *fakePython {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, _ := zctx.NewSocket(zmq.XPUB)
	sock.SetLinger(100 * time.Millisecond) // not 0: see minSendLingerMS in the gilmsg package
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	addr, _ := sock.GetLastEndpoint()
	p := &fakePython{zctx: zctx, sock: sock, addr: addr}
	t.Cleanup(func() { sock.Close(); zctx.Term() })
	return p
}

// waitSubscribed waits for a subscription to reach the socket.
func (p *fakePython) waitSubscribed(t *testing.T) {
	t.Helper()
	p.sock.SetRcvtimeo(20 * time.Second)
	if _, err := p.sock.RecvBytes(0); err != nil {
		t.Fatalf("no subscriber came: %v", err)
	}
}

func (p *fakePython) send(t *testing.T, body string) {
	t.Helper()
	env, err := gilmsg.ParseEnvelope([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.sock.SendMessage(env.Topic, body); err != nil {
		t.Fatal(err)
	}
}

func subscriber(t *testing.T, endpoints map[string][]string, replay map[string]string, edit func(*gilmsg.Config)) *gilmsg.Bus {
	t.Helper()
	cfg := gilmsg.DefaultConfig()
	cfg.TopicPrefix = "org.fedoraproject"
	cfg.Endpoints = endpoints
	cfg.ReplayEndpoints = replay
	cfg.CACertLocation = "../testdata/pki/ca.crt"
	cfg.CRLLocation = "../testdata/pki/crl.pem"
	if edit != nil {
		edit(cfg)
	}
	b, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// next reads one item, message or error, with a generous deadline.
func next(t *testing.T, s *gilmsg.Subscription) (*gilmsg.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := s.Next(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("nothing came")
	}
	return m, err
}

func wantSeq(t *testing.T, s *gilmsg.Subscription, seqs ...int64) {
	t.Helper()
	for _, want := range seqs {
		m, err := next(t, s)
		if err != nil {
			t.Fatalf("want seq_id %d, got error %v", want, err)
		}
		if got, _ := m.SeqID(); got != want {
			t.Fatalf("got seq_id %d, want %d", got, want)
		}
	}
}

// TestTailRecoversFromPythonStore: Python published n=1..6 with its store
// and lost 3 and 5 in transit (pyreplay.py publish ... 6 3,5). A Go tail
// that sees 1, 2, 4, 6 yields 1..6 in order, each once, every one
// validated although Python signed it before adding seq_id.
func TestTailRecoversFromPythonStore(t *testing.T) {
	st := openStore(t, "sqlite:///"+copyFixture(t))
	srv := startReplay(t, "pyrep", st)
	var bodies []string
	for _, a := range pythonAnswers(t) {
		if a.Query == "{}" {
			bodies = a.Frames
		}
	}
	py := newFakePython(t)
	bus := subscriber(t, map[string][]string{"pyrep": {py.addr}}, map[string]string{"pyrep": srv.Endpoint()}, nil)
	sub, err := bus.Subscribe(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	py.waitSubscribed(t)
	for _, i := range []int{0, 1, 3, 5} { // n = 1, 2, 4, 6: what Python sent
		py.send(t, bodies[i])
	}
	for want := int64(1); want <= 6; want++ {
		m, err := next(t, sub)
		if err != nil {
			t.Fatalf("seq_id %d: %v", want, err)
		}
		if got, _ := m.SeqID(); got != want || m.Signer != "shell-app01.example.org" {
			t.Fatalf("got seq_id %d signed by %q, want %d by shell-app01", got, m.Signer, want)
		}
		var payload struct{ N int64 }
		if err := m.Decode(&payload); err != nil || payload.N != want {
			t.Fatalf("seq_id %d carries %+v", want, payload)
		}
	}
	// A late copy of a recovered message is not yielded again.
	py.send(t, bodies[2])
	py.send(t, bodies[5])
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m, err := sub.Next(ctx); err == nil {
		t.Fatalf("yielded a copy again: %s", m.Body)
	}
}

// TestTailGapWithoutServer: no server, or one that answers garbage: the
// gap is an error value in the iteration, and the live message follows.
func TestTailGapWithoutServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := "tcp://" + l.Addr().String() // accepts, never speaks ZMTP
	defer l.Close()
	garbage := garbageServer(t)
	for name, ep := range map[string]string{"silent": silent, "garbage": garbage, "nobody": "tcp://127.0.0.1:1"} {
		t.Run(name, func(t *testing.T) {
			py := newFakePython(t)
			bus := subscriber(t, map[string][]string{"pub": {py.addr}}, map[string]string{"pub": ep}, nil)
			sub, err := bus.Subscribe(context.Background(), "", gilmsg.WithoutValidation(), gilmsg.WithReplayTimeout(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			py.waitSubscribed(t)
			py.send(t, `{"topic":"org.fedoraproject.dev.x.y","msg":1,"msg_id":"2026-a","seq_id":1}`)
			py.send(t, `{"topic":"org.fedoraproject.dev.x.y","msg":4,"msg_id":"2026-b","seq_id":4}`)
			wantSeq(t, sub, 1)
			_, err = next(t, sub)
			var gap *gilmsg.GapError
			var re *gilmsg.ReplayError
			if !errors.As(err, &gap) || gap.Name != "pub" || gap.From != 2 || gap.To != 3 || !errors.As(err, &re) {
				t.Fatalf("want GapError{pub, 2, 3} from a ReplayError, got %v", err)
			}
			if name == "garbage" && !strings.Contains(err.Error(), "garbage") {
				t.Errorf("error does not say the answer was garbage: %v", err)
			}
			if name != "garbage" && !errors.Is(err, gilmsg.ErrReplayTimeout) {
				t.Errorf("error does not say nobody answered: %v", err)
			}
			wantSeq(t, sub, 4)
		})
	}
}

func garbageServer(t *testing.T) string {
	t.Helper()
	zctx, _ := zmq.NewContext()
	sock, _ := zctx.NewSocket(zmq.REP)
	sock.SetLinger(100 * time.Millisecond) // not 0: see minSendLingerMS in the gilmsg package
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	addr, _ := sock.GetLastEndpoint()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p, _ := poller.Poll(50 * time.Millisecond); len(p) > 0 {
				sock.RecvMessageBytes(0)
				sock.SendMessage("[1, 2", "\x00")
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; sock.Close(); zctx.Term() })
	return addr
}

// TestCatchUpAfterRestart: a tail with a status file, stopped while its
// publisher goes on, yields on restart exactly what it missed, in order,
// before the live traffic; with SQLite and with PostgreSQL as the store.
func TestCatchUpAfterRestart(t *testing.T) {
	for kind, url := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			st := openStore(t, url)
			pub := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, st, nil)
			srv := startReplay(t, "svc", openStore(t, url))
			status := filepath.Join(t.TempDir(), "gilmsg-tail")
			bus := subscriber(t, map[string][]string{"svc": {pub.Endpoint()}}, map[string]string{"svc": srv.Endpoint()}, nil)
			open := func() *gilmsg.Subscription {
				sub, err := bus.Subscribe(context.Background(), "", gilmsg.WithoutValidation(), gilmsg.WithStatusFile(status))
				if err != nil {
					t.Fatal(err)
				}
				return sub
			}
			sub := open()
			waitSubs(t, pub, 1)
			publishN(t, pub, 3, 1)
			wantSeq(t, sub, 1, 2, 3)
			sub.Close()
			waitSubs(t, pub, 0)
			publishN(t, pub, 5, 1) // 4..8, missed
			sub = open()
			defer sub.Close()
			wantSeq(t, sub, 4, 5, 6, 7, 8)
			waitSubs(t, pub, 1)
			publishN(t, pub, 1, 1)
			wantSeq(t, sub, 9)
			sub.Close()
			data, err := os.ReadFile(status)
			if err != nil || !strings.Contains(string(data), `"seq_id": 9`) {
				t.Fatalf("status file after close: %s %v", data, err)
			}
		})
	}
}

func waitSubs(t *testing.T, b *gilmsg.Bus, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for b.Subscribers("") != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", b.Subscribers(""), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTwoPublishersSharePostgres: two processes of one service, on two
// endpoints of one name, share a PostgreSQL store; a tail of both yields
// every seq_id once, in order, recovering what arrives out of order.
func TestTwoPublishersSharePostgres(t *testing.T) {
	url := testenv.Postgres(t)
	addrs := []string{freeAddr(t), freeAddr(t)}
	p1 := newPublisher(t, "svc", addrs, openStore(t, url), nil)
	p2 := newPublisher(t, "svc", addrs, openStore(t, url), nil)
	if p1.Endpoint() == p2.Endpoint() {
		t.Fatal("both publishers on one endpoint")
	}
	srv := startReplay(t, "svc", openStore(t, url))
	bus := subscriber(t, map[string][]string{"svc": addrs}, map[string]string{"svc": srv.Endpoint()}, nil)
	sub, err := bus.Subscribe(context.Background(), "", gilmsg.WithoutValidation())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	waitSubs(t, p1, 1)
	waitSubs(t, p2, 1)
	// The first message sets where the tail starts: one from p1 first, so
	// that nothing of p2 comes before it.
	publishN(t, p1, 1, 1)
	wantSeq(t, sub, 1)
	const each = 40
	errs := make(chan error, 2)
	for _, p := range []*gilmsg.Bus{p1, p2} {
		go func() {
			_, err := publishSeqs(p, each, 4)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]int{1: 1}
	var order []int64
	late := map[int64]bool{}
	for len(seen) < 2*each+1 {
		m, err := next(t, sub)
		var gap *gilmsg.GapError
		if errors.As(err, &gap) {
			// A seq_id taken but not yet committed by the other process:
			// reported, and welcome when it comes.
			t.Logf("gap: %v", err)
			for i := gap.From; i <= gap.To; i++ {
				late[i] = true
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := m.SeqID()
		seen[seq]++
		order = append(order, seq)
	}
	for seq := int64(1); seq <= 2*each+1; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq_id %d yielded %d times", seq, seen[seq])
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] && !late[order[i]] {
			t.Errorf("out of order: %d after %d", order[i], order[i-1])
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// TestCorruptStatusFile: a status file that is not ours is an error naming
// it, not a silent restart from live traffic.
func TestCorruptStatusFile(t *testing.T) {
	status := filepath.Join(t.TempDir(), "gilmsg-tail")
	os.WriteFile(status, []byte("{not json"), 0o644)
	bus := subscriber(t, map[string][]string{"svc": {freeAddr(t)}}, map[string]string{"svc": freeAddr(t)}, nil)
	_, err := bus.Subscribe(context.Background(), "", gilmsg.WithStatusFile(status))
	if err == nil || !strings.Contains(err.Error(), status) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Subscribe with a corrupt status file: %v", err)
	}
}

// TestCatchUpPagesByteCutAnswers: a replay answer stops at
// replayserver.FullReplyBytes (32 MiB) however few messages that is, and
// the recovering subscriber asks for the next page when an answer is that
// full, as when it holds replaywire.MaxReplyMessages. A subscriber that
// comes back with 40 messages of 1 MB missed gets all 40, in order, once,
// with no live message to show it what it lacks: taken for the last page,
// the first answer would leave the 8 behind it unasked.
func TestCatchUpPagesByteCutAnswers(t *testing.T) {
	const missed, size = 40, 1 << 20
	url := "sqlite:///" + filepath.Join(t.TempDir(), "store.db")
	pub := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, openStore(t, url), nil)
	srv := startReplay(t, "svc", openStore(t, url))
	status := filepath.Join(t.TempDir(), "gilmsg-tail")
	bus := subscriber(t, map[string][]string{"svc": {pub.Endpoint()}}, map[string]string{"svc": srv.Endpoint()}, nil)
	open := func() *gilmsg.Subscription {
		// An answer of 32 MiB read from SQLite can take longer than the
		// default 2 s on a loaded machine; what is tested is the paging.
		sub, err := bus.Subscribe(context.Background(), "", gilmsg.WithoutValidation(), gilmsg.WithStatusFile(status),
			gilmsg.WithReplayTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	sub := open()
	waitSubs(t, pub, 1)
	publishN(t, pub, 1, 1)
	wantSeq(t, sub, 1)
	sub.Close()
	waitSubs(t, pub, 0)
	pad := strings.Repeat("p", size)
	for i := range missed {
		if _, err := pub.Publish(context.Background(), "big", map[string]any{"i": i, "pad": pad}); err != nil {
			t.Fatal(err)
		}
	}
	if missed*size <= replayserver.FullReplyBytes {
		t.Fatalf("%d messages of %d bytes fit one answer", missed, size)
	}
	sub = open()
	defer sub.Close()
	seqs := make([]int64, missed)
	for i := range seqs {
		seqs[i] = int64(2 + i)
	}
	wantSeq(t, sub, seqs...)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m, err := sub.Next(ctx); err == nil {
		seq, _ := m.SeqID()
		t.Fatalf("seq_id %d yielded after the last one", seq)
	}
}
