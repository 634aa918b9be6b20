package gilmsg

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// testdata/replay/python-replay.jsonl is what Python fedmsg 1.1.7's
// ReplayContext over its SqlStore (sqlite) really answered a gilmsg tail,
// recorded by a REQ/REP proxy between them: one line per request, byte for
// byte, with Python's frames; the last line holds seq_ids 192..201 as
// Python stored them, which the test sends live. The tail had delivered
// 1..20 (status file), and Python's publisher had gone on to 201, losing
// 194 and 195 in transit. Python refuses every seq_id_range (its store
// reads a column "sed_id"), so the catch-up goes by seq_ids, 999 a
// request: SQLite before 3.32 refuses a statement with more variables,
// and Python's store binds one per seq_id. (Recorded through a proxy with
// lists of 1 000; the lists of 999 were asked of the same store's rows
// as they stood then, with pyreplay.py query.)
const pythonReplayFixture = "testdata/replay/python-replay.jsonl"

type recordedReplay struct {
	answers map[string][]string
	live    [][]byte
}

func loadRecordedReplay(t *testing.T) recordedReplay {
	t.Helper()
	f, err := os.Open(pythonReplayFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := recordedReplay{answers: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Request string   `json:"request"`
			Frames  []string `json:"frames"`
			Live    []string `json:"live"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Live != nil {
			for _, b := range l.Live {
				rec.live = append(rec.live, []byte(b))
			}
			continue
		}
		rec.answers[l.Request] = l.Frames
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// pythonStandIn answers exactly the recorded requests with Python's frames,
// and anything else with an error frame it notes, so that a request shape
// Python was never asked fails the test.
type pythonStandIn struct {
	addr       string
	mu         sync.Mutex
	asked      []string
	unrecorded []string
}

func startPythonStandIn(t *testing.T, rec recordedReplay) *pythonStandIn {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, _ := zctx.NewSocket(zmq.REP)
	sock.SetLinger(100 * time.Millisecond)
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	p := &pythonStandIn{}
	p.addr, _ = sock.GetLastEndpoint()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer zctx.Term()
		defer sock.Close()
		poller := zmq.NewPoller()
		poller.Add(sock, zmq.POLLIN)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if ready, _ := poller.Poll(20 * time.Millisecond); len(ready) == 0 {
				continue
			}
			req, err := sock.RecvBytes(0)
			if err != nil {
				continue
			}
			frames, ok := rec.answers[string(req)]
			p.mu.Lock()
			p.asked = append(p.asked, string(req))
			if !ok {
				p.unrecorded = append(p.unrecorded, string(req))
				frames = []string{"error: 'not a request Python was asked'"}
			}
			p.mu.Unlock()
			parts := make([]any, len(frames))
			for i, f := range frames {
				parts[i] = f
			}
			sock.SendMessage(parts...)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return p
}

// A restart's catch-up and a gap in transit are both filled from Python's
// replay server, with the request shapes it answers.
func TestRecoveryFromPythonReplayServer(t *testing.T) {
	rec := loadRecordedReplay(t)
	py := startPythonStandIn(t, rec)
	status := filepath.Join(t.TempDir(), "tail")
	if err := os.WriteFile(status, []byte(`{"version":2,"names":{"pyrep":{"seq_id":20,"timestamp":1796647834}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := newSeqPub(t)
	cfg := DefaultConfig()
	cfg.TopicPrefix, cfg.Environment = "org.fedoraproject", "dev"
	cfg.Endpoints = map[string][]string{"pyrep": {pub.addr}}
	cfg.ReplayEndpoints = map[string]string{"pyrep": py.addr}
	cfg.ValidateSignatures = false
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	sub, err := b.Subscribe(t.Context(), "", WithStatusFile(status), WithReplayTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })

	var want []int64
	for seq := int64(21); seq <= 191; seq++ {
		want = append(want, seq)
	}
	if gaps := wantSeqs(t, sub, want...); len(gaps) > 0 {
		t.Fatalf("catch-up yielded gaps: %v", gaps[0])
	}

	pub.waitSubscribed(t)
	var live [][]byte
	for _, body := range rec.live {
		env, err := ParseEnvelope(body)
		if err != nil {
			t.Fatal(err)
		}
		if seq, _ := env.SeqID(); seq != 194 && seq != 195 {
			live = append(live, body)
		}
	}
	pub.send(t, live...)
	if gaps := wantSeqs(t, sub, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201); len(gaps) > 0 {
		t.Fatalf("the gap was not filled: %v", gaps[0])
	}

	py.mu.Lock()
	defer py.mu.Unlock()
	if len(py.unrecorded) > 0 {
		t.Fatalf("asked Python's server what it was never asked: %.120s", py.unrecorded[0])
	}
	if !slices.Contains(py.asked, `{"seq_ids":[194,195]}`) {
		t.Fatalf("the gap was not asked by seq_ids: %v", short(py.asked))
	}
}

func short(reqs []string) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = fmt.Sprintf("%.60s", r)
	}
	return out
}
