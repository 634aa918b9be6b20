package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// A batch publish stores its messages in their order with consecutive
// seq_ids, in one transaction per 512 (the store-lag hook is called once
// per transaction), and sends them in that order.
func TestPublishBatchStoresInOrder(t *testing.T) {
	for kind, url := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			st := openStore(t, url)
			var commits atomic.Int64
			hooks := &gilmsg.Hooks{StoreLag: func(time.Duration) { commits.Add(1) }}
			b := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, st, nil, gilmsg.WithHooks(hooks))
			const n = 700
			msgs := make([]gilmsg.BatchMessage, n)
			for i := range msgs {
				msgs[i] = gilmsg.BatchMessage{Topic: "batch", Msg: map[string]any{"i": i}}
			}
			receipts, err := b.PublishBatch(ctxT(t), msgs)
			if err != nil || len(receipts) != n {
				t.Fatalf("%d receipts, error %v; want %d", len(receipts), err, n)
			}
			if c := commits.Load(); c != 2 {
				t.Errorf("%d transactions for %d messages, want 2", c, n)
			}
			stored, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
			if err != nil || len(stored) != n {
				t.Fatalf("%d stored, error %v", len(stored), err)
			}
			for i, m := range stored {
				var env struct {
					Msg struct{ I int }
				}
				if err := json.Unmarshal(m.Body, &env); err != nil {
					t.Fatal(err)
				}
				if env.Msg.I != i || m.SeqID != receipts[i].SeqID || m.SeqID != receipts[0].SeqID+int64(i) {
					t.Fatalf("stored #%d: seq_id %d holds i=%d; receipt seq_id %d", i, m.SeqID, env.Msg.I, receipts[i].SeqID)
				}
			}
		})
	}
}

// A reliable message in a batch is refused, and only the messages before
// it are stored and sent: the caller starts again from len(receipts).
func TestPublishBatchStopsAtReliable(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, st, nil)
	msgs := []gilmsg.BatchMessage{
		{Topic: "a", Msg: 1}, {Topic: "b", Msg: 2},
		{Topic: "c", Msg: 3, Opts: []gilmsg.PublishOption{gilmsg.WithRecipients("someone")}},
		{Topic: "d", Msg: 4},
	}
	receipts, err := b.PublishBatch(ctxT(t), msgs)
	if !errors.Is(err, gilmsg.ErrInvalidOption) || len(receipts) != 2 {
		t.Fatalf("%d receipts, error %v; want 2 and ErrInvalidOption", len(receipts), err)
	}
	stored, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
	if err != nil || len(stored) != 2 {
		t.Fatalf("%d stored (error %v), want the 2 before the reliable one", len(stored), err)
	}
}

// A store that fails sends nothing of the batch.
func TestPublishBatchStoreFails(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, st, nil)
	st.Close()
	receipts, err := b.PublishBatch(ctxT(t), []gilmsg.BatchMessage{{Topic: "a", Msg: 1}, {Topic: "b", Msg: 2}})
	var se *gilmsg.StoreError
	if !errors.As(err, &se) || len(receipts) != 0 {
		t.Fatalf("%d receipts, error %v; want none and a StoreError", len(receipts), err)
	}
	if s := b.Stats(); s.Published != 0 {
		t.Errorf("%d messages sent after the store failed", s.Published)
	}
}

// resealing is a store whose Append seals each batch once with seq_ids
// of its own before the real store seals it again, as sqlstore's
// PostgreSQL Append does when it retries on a fresh connection.
type resealing struct{ gilmsg.Store }

func (r resealing) Append(ctx context.Context, b *gilmsg.Batch) error {
	ids := make([]int64, len(b.Entries))
	for i := range ids {
		ids[i] = 1<<40 + int64(i)
	}
	if err := b.Seal(ids); err != nil {
		return err
	}
	return r.Store.Append(ctx, b)
}

// Batches of every size SQLite's Append splits into its INSERTs, sealed
// twice: each row holds its own message with its own seq_id, once, and
// the receipt names that seq_id.
func TestAppendEverySize(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, resealing{st}, nil)
	total := 0
	for _, n := range []int{1, 2, 3, 63, 64, 65, 127, 200, 512} {
		msgs := make([]gilmsg.BatchMessage, n)
		for i := range msgs {
			msgs[i] = gilmsg.BatchMessage{Topic: "size", Msg: map[string]any{"n": n, "i": i}}
		}
		receipts, err := b.PublishBatch(ctxT(t), msgs)
		if err != nil || len(receipts) != n {
			t.Fatalf("batch of %d: %d receipts, error %v", n, len(receipts), err)
		}
		stored, err := st.Query(ctxT(t), &gilmsg.Query{All: true, AfterSeqID: int64(total)})
		if err != nil || len(stored) != n {
			t.Fatalf("batch of %d: %d stored, error %v", n, len(stored), err)
		}
		for i, m := range stored {
			var env struct {
				SeqID int64 `json:"seq_id"`
				Msg   struct{ N, I int }
			}
			if err := json.Unmarshal(m.Body, &env); err != nil {
				t.Fatal(err)
			}
			if m.SeqID != int64(total+i+1) || env.SeqID != m.SeqID || env.Msg.N != n || env.Msg.I != i ||
				receipts[i].SeqID != m.SeqID || strings.Count(string(m.Body), `"seq_id"`) != 1 {
				t.Fatalf("batch of %d, row %d: seq_id %d holds %s; receipt seq_id %d", n, i, m.SeqID, m.Body, receipts[i].SeqID)
			}
		}
		total += n
	}
}
