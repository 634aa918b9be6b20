package sqlstore_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
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
