package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	_ "github.com/gilmsg/gilmsg-go/sqlstore"
)

// TestNewOpensPersistentStore: with the package imported, persistent_store
// alone makes a bus store what it publishes, as fedmsg.init does; a
// driver+dialect scheme opens too.
func TestNewOpensPersistentStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	cfg := gilmsg.DefaultConfig()
	cfg.Name = "pub"
	cfg.Endpoints = map[string][]string{"pub": {"tcp://127.0.0.1:*"}}
	cfg.ValidateSignatures = false
	cfg.PostInitSleep = 0
	cfg.PersistentStore = "sqlite:///" + path
	b, err := gilmsg.New(cfg, gilmsg.WithModname("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var seqs []int64
	for i := range 3 {
		r, err := b.Publish(ctxT(t), "stored", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, r.SeqID)
	}
	if seqs[0] != 1 || seqs[2] != 3 {
		t.Fatalf("seq_ids %v, want 1 2 3 from the configured store", seqs)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := gilmsg.OpenStore(context.Background(), "sqlite+pysqlite:///"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := seqsOf(t, got); len(s) != 3 || s[2] != 3 {
		t.Fatalf("store holds seq_ids %v, want 1 2 3", s)
	}
}

// TestStoringPublishHonoursCtx: a publish waiting for a store that is
// locked by another process ends with its ctx, saying so, instead of
// waiting for the lock's busy timeout.
func TestStoringPublishHonoursCtx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	st := openStore(t, "sqlite:///"+path+"?busy_timeout=20000")
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, func(c *gilmsg.Config) { c.PostInitSleep = 0 })
	if _, err := b.Publish(ctxT(t), "stored", map[string]any{"i": 0}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctxT(t), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = b.Publish(ctx, "stored", map[string]any{"i": 1})
	var se *gilmsg.StoreError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &se) {
		t.Fatalf("publish to a locked store with a 300 ms ctx: %v, want a StoreError matching context.DeadlineExceeded", err)
	}
}
