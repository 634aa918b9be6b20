package replayserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/replaywire"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

// memStore is a Store of a few messages, seq_id i+1 for msgs[i]. The
// servers over SQLite and PostgreSQL, and Python's answers over the same
// file, are tested in package sqlstore.
type memStore struct {
	msgs [][]byte
	fail error
}

func (m *memStore) Append(context.Context, *gilmsg.Batch) error {
	return errors.New("read-only")
}

func (m *memStore) Query(_ context.Context, q *gilmsg.Query) ([]gilmsg.StoredMessage, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	var out []gilmsg.StoredMessage
	for i, b := range m.msgs {
		seq := int64(i + 1)
		in := q.All || slices.Contains(q.SeqIDs, seq) || (q.SeqIDRange != nil && seq >= q.SeqIDRange[0] && seq <= q.SeqIDRange[1])
		if in && seq > q.AfterSeqID && (q.Limit == 0 || len(out) < q.Limit) {
			out = append(out, gilmsg.StoredMessage{SeqID: seq, Body: b})
		}
	}
	return out, nil
}

func (m *memStore) Close() error { return nil }

func stored(n int) [][]byte {
	var out [][]byte
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Appendf(nil, `{"msg": {"n": %d}, "seq_id": %d, "topic": "t"}`, i, i))
	}
	return out
}

func newServer(t *testing.T, st gilmsg.Store) *Server {
	t.Helper()
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"pub": "tcp://127.0.0.1:*"}
	s, err := New(cfg, "pub", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Answer gives the stored messages as canonical JSON, in seq_id order,
// at most MaxReplyMessages, and one "error: ..." frame for what it
// refuses.
func TestAnswer(t *testing.T) {
	testenv.CheckLeaks(t)
	st := &memStore{msgs: stored(MaxReplyMessages + 3)}
	s := newServer(t, st)
	ctx := t.Context()
	got := s.Answer(ctx, [][]byte{[]byte(`{"seq_id_range": [2, 3]}`)})
	want := []string{`{"msg":{"n":2},"seq_id":2,"topic":"t"}`, `{"msg":{"n":3},"seq_id":3,"topic":"t"}`}
	if len(got) != 2 || string(got[0]) != want[0] || string(got[1]) != want[1] {
		t.Errorf("seq_id_range [2, 3]: %q, want %q", got, want)
	}
	if got := s.Answer(ctx, [][]byte{[]byte(`{}`)}); len(got) != MaxReplyMessages {
		t.Errorf("{} over %d messages: %d frames, want MaxReplyMessages", len(st.msgs), len(got))
	}
	if got := s.Answer(ctx, [][]byte{[]byte(`{"after_seq_id": 1000}`)}); len(got) != 3 {
		t.Errorf("after_seq_id 1000: %d frames, want the last 3", len(got))
	}
	for req, want := range map[string]string{
		`{"seq_id": 99999}`:     replyNoMatch,
		`not json`:              "not JSON",
		`[]`:                    "not an object",
		`{"seq_id": "x"}`:       `processing the field "seq_id"`,
		`{"seq_id_range": [1]}`: `Ill-format "seq_id_range"`,
		`{"bogus": 1}`:          `Unsupported field: "bogus"`,
	} {
		got := s.Answer(ctx, [][]byte{[]byte(req)})
		if len(got) != 1 || !strings.HasPrefix(string(got[0]), errPrefix) || !strings.Contains(string(got[0]), want) {
			t.Errorf("%s: %q, want one error frame saying %q", req, got, want)
		}
		// The peer is Python's replay client: the Go package's own error
		// prefix, or its doubled words, mean nothing to it.
		if len(got) == 1 && (strings.Contains(string(got[0]), "gilmsg") || strings.Contains(string(got[0]), "invalid JSON")) {
			t.Errorf("%s: %q quotes a Go error's words", req, got)
		}
	}
	if got := s.Answer(ctx, [][]byte{[]byte(`{}`), []byte(`{}`)}); len(got) != 1 || !strings.Contains(string(got[0]), "one frame, got 2") {
		t.Errorf("two frames: %q", got)
	}
	st.fail = errors.New("disk on fire")
	if got := s.Answer(ctx, [][]byte{[]byte(`{}`)}); len(got) != 1 || !strings.Contains(string(got[0]), "disk on fire") {
		t.Errorf("failing store: %q", got)
	}
}

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery([]byte(`{"seq_ids": [3, "4", 5.0], "msg_id": "a", "time": [1, 2.5], "after_seq_id": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.SeqIDs, []int64{3, 4, 5}) || !slices.Equal(q.MsgIDs, []string{"a"}) || q.Time == nil || q.Time[1] != 2.5 || q.AfterSeqID != 2 || q.All {
		t.Errorf("query %+v", q)
	}
	if q, err := ParseQuery([]byte(`{"after_seq_id": 7}`)); err != nil || !q.All {
		t.Errorf("after_seq_id alone: %+v, %v: want everything after it", q, err)
	}
	var qe *QueryError
	for _, req := range []string{
		`{"seq_ids": [true]}`,
		`{"time": [1, 1e300]}`,
		fmt.Sprintf(`{"seq_ids": [%s1]}`, strings.Repeat("1,", MaxQueryIDs)),
		`{"seq_id": 99999999999999999999}`,
	} {
		if _, err := ParseQuery([]byte(req)); !errors.As(err, &qe) {
			t.Errorf("%.60s: %v, want a QueryError", req, err)
		}
	}
	if _, err := ParseQuery(make([]byte, MaxRequestBytes+1)); !errors.As(err, &qe) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("a request over MaxRequestBytes: %v", err)
	}
}

func TestNewRefusesWhatItCannotServe(t *testing.T) {
	cfg := gilmsg.DefaultConfig()
	cfg.ReplayEndpoints = map[string]string{"pub": "ipc:///tmp/x", "other": "tcp://127.0.0.1:*"}
	var ce *gilmsg.ConfigError
	for _, tc := range []struct {
		name string
		st   gilmsg.Store
	}{{"pub", &memStore{}}, {"nobody", &memStore{}}, {"other", nil}} {
		if _, err := New(cfg, tc.name, tc.st, nil); !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigError", tc.name, err)
		}
	}
}

// The limits are written out here for the reader of this package's
// documentation; the root's recovery reads replaywire's, and a reply of
// MaxReplyMessages, or of FullReplyBytes, is what makes it ask for the
// next page.
func TestLimitsMatchTheClient(t *testing.T) {
	if MaxReplyMessages != replaywire.MaxReplyMessages || MaxQueryIDs != replaywire.MaxQueryIDs || MaxRequestBytes != replaywire.MaxRequestBytes || FullReplyBytes != replaywire.FullReplyBytes {
		t.Errorf("replayserver's limits %d, %d, %d, %d; the client's %d, %d, %d, %d", MaxReplyMessages, MaxQueryIDs, MaxRequestBytes, FullReplyBytes,
			replaywire.MaxReplyMessages, replaywire.MaxQueryIDs, replaywire.MaxRequestBytes, replaywire.FullReplyBytes)
	}
}

func TestNewNilConfig(t *testing.T) {
	if _, err := New(nil, "pub", &memStore{}, nil); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("New(nil) = %v, want ErrConfig", err)
	}
}
