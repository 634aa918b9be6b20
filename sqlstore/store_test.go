package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

func TestMain(m *testing.M) {
	// The Python fixtures were written with TZ=UTC: SqlStore keeps local
	// naive times, and time queries are read in local time.
	time.Local = time.UTC
	os.Exit(testenv.Run(m))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stores returns one fresh store URL per kind.
func stores(t *testing.T) map[string]string {
	return map[string]string{
		"sqlite":     "sqlite:///" + filepath.Join(t.TempDir(), "store.db"),
		"postgresql": testenv.Postgres(t),
	}
}

func openStore(t *testing.T, url string) gilmsg.Store {
	t.Helper()
	st, err := sqlstore.Open(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newPublisher is a bus named name on addrs, storing in st.
func newPublisher(t *testing.T, name string, addrs []string, st gilmsg.Store, edit func(*gilmsg.Config), opts ...gilmsg.Option) *gilmsg.Bus {
	t.Helper()
	cfg := gilmsg.DefaultConfig()
	cfg.TopicPrefix = "org.fedoraproject"
	cfg.Name = name
	cfg.Endpoints = map[string][]string{name: addrs}
	cfg.ValidateSignatures = false
	if edit != nil {
		edit(cfg)
	}
	b, err := gilmsg.New(cfg, append([]gilmsg.Option{gilmsg.WithStore(st), gilmsg.WithModname("test")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func publishN(t *testing.T, b *gilmsg.Bus, n, workers int) []int64 {
	t.Helper()
	seqs, err := publishSeqs(b, n, workers)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// publishSeqs publishes n messages from workers goroutines and returns
// their seq_ids, sorted.
func publishSeqs(b *gilmsg.Bus, n, workers int) ([]int64, error) {
	var mu sync.Mutex
	var seqs []int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				r, err := b.Publish(context.Background(), "stored", map[string]any{"i": i})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seqs = append(seqs, r.SeqID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	slices.Sort(seqs)
	return seqs, <-errs
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func seqsOf(t *testing.T, msgs []gilmsg.StoredMessage) []int64 {
	t.Helper()
	var out []int64
	for _, m := range msgs {
		env, err := gilmsg.ParseEnvelope(m.Body)
		if err != nil {
			t.Fatalf("stored body of %d: %v", m.SeqID, err)
		}
		if seq, ok := env.SeqID(); !ok || seq != m.SeqID {
			t.Fatalf("row %d holds a message whose seq_id is %v", m.SeqID, seq)
		}
		out = append(out, m.SeqID)
	}
	return out
}

// TestStoreConformance runs the same checks on every kind of store:
// seq_ids unique and dense under concurrent publishing (group commit),
// every query shape, paging, and the counter going on after a reopen.
func TestStoreConformance(t *testing.T) {
	for kind, url := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := ctxT(t)
			st := openStore(t, url)
			b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil)
			if got := publishN(t, b, 60, 8); !slices.Equal(got, seqRange(1, 60)) {
				t.Fatalf("seq_ids %v, want 1..60 once each", got)
			}
			all, err := st.Query(ctx, &gilmsg.Query{All: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := seqsOf(t, all); !slices.Equal(got, seqRange(1, 60)) {
				t.Fatalf("stored %v", got)
			}
			env, _ := gilmsg.ParseEnvelope(all[9].Body)
			now := float64(time.Now().Unix())
			for _, c := range []struct {
				name string
				q    gilmsg.Query
				want []int64
			}{
				{"seq_ids", gilmsg.Query{SeqIDs: []int64{3, 5, 99}}, []int64{3, 5}},
				{"range", gilmsg.Query{SeqIDRange: &[2]int64{7, 9}}, []int64{7, 8, 9}},
				{"msg_ids", gilmsg.Query{MsgIDs: []string{env.MsgID, "nope"}}, []int64{10}},
				{"or", gilmsg.Query{SeqIDs: []int64{1}, SeqIDRange: &[2]int64{59, 70}}, []int64{1, 59, 60}},
				{"time", gilmsg.Query{Time: &[2]float64{now - 600, now + 600}, Limit: 3}, []int64{1, 2, 3}},
				{"time past", gilmsg.Query{Time: &[2]float64{0, 1}}, nil},
				{"page", gilmsg.Query{All: true, AfterSeqID: 55, Limit: 3}, []int64{56, 57, 58}},
				// A catch-up's open end, past PostgreSQL's int4 seq_id.
				{"open range", gilmsg.Query{SeqIDRange: &[2]int64{58, 1 << 62}}, []int64{58, 59, 60}},
				{"page past int4", gilmsg.Query{All: true, AfterSeqID: 1 << 40}, nil},
				{"nothing", gilmsg.Query{}, nil},
			} {
				got, err := st.Query(ctx, &c.q)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if s := seqsOf(t, got); !slices.Equal(s, c.want) {
					t.Errorf("%s: got %v, want %v", c.name, s, c.want)
				}
			}
			b.Close()
			st.Close()
			st2 := openStore(t, url)
			b2 := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st2, nil)
			if got := publishN(t, b2, 1, 1); got[0] != 61 {
				t.Fatalf("after reopening, seq_id %d, want 61", got[0])
			}
		})
	}
}

// TestStoreSharedByTwoProcesses: two buses of one service, each with its
// own connection to one store, get distinct seq_ids from one counter.
func TestStoreSharedByTwoProcesses(t *testing.T) {
	for kind, url := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			b1 := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, openStore(t, url), nil)
			b2 := newPublisher(t, "svc", []string{"tcp://127.0.0.1:*"}, openStore(t, url), nil)
			var got []int64
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, b := range []*gilmsg.Bus{b1, b2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := publishN(t, b, 40, 4)
					mu.Lock()
					got = append(got, s...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			slices.Sort(got)
			if !slices.Equal(got, seqRange(1, 80)) {
				t.Fatalf("seq_ids %v, want 1..80 once each", got)
			}
		})
	}
}

// TestPythonStoreFile: a file written by Python's SqlStore is read as is,
// and Go's writes continue its counter in the same table.
func TestPythonStoreFile(t *testing.T) {
	path := copyFixture(t)
	st := openStore(t, "sqlite:///"+path)
	all, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(t, all); !slices.Equal(got, seqRange(1, 6)) {
		t.Fatalf("Python's file holds %v", got)
	}
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil)
	if got := publishN(t, b, 2, 1); !slices.Equal(got, []int64{7, 8}) {
		t.Fatalf("Go's seq_ids after Python's: %v", got)
	}
}

func copyFixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/replay/python-store.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "python-store.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBadStores: each unusable store is an error that names the store and
// the cause; a message that cannot be stored is not sent.
func TestBadStores(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte(strings.Repeat("this is no database\n", 400)), 0o644)
	for _, c := range []struct{ url, want string }{
		{"sqlite:///" + junk, "not a usable SQLite database"},
		{"mysql://localhost/x", "unsupported persistent_store URL"},
		{"/var/lib/x.db", "has no scheme"},
		{"sqlite://", "names no file"},
		{"sqlite:///" + filepath.Join(dir, "x.db") + "?synchronous=sometimes", "synchronous=sometimes"},
		{"sqlite:///" + filepath.Join(dir, "missing", "x.db"), "cannot open"},
		{"postgresql://nobody@127.0.0.1:1/x?connect_timeout=5", "cannot connect to PostgreSQL"},
	} {
		_, err := sqlstore.Open(ctxT(t), c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want an error saying %q", c.url, err, c.want)
		}
	}

	t.Run("locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "locked.db")
		st := openStore(t, "sqlite:///"+path+"?busy_timeout=200")
		b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil)
		// A subscriber, to see what is sent: messages of one connection
		// arrive in order, so the next it sees after the failed publish
		// tells whether that one went out.
		wcfg := gilmsg.DefaultConfig()
		wcfg.Endpoints = map[string][]string{"pub": {b.Endpoint()}}
		wcfg.ValidateSignatures = false
		w, err := gilmsg.New(wcfg)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		sub, err := w.Subscribe(ctxT(t), "", gilmsg.WithoutReplay())
		if err != nil {
			t.Fatal(err)
		}
		next := func() string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("subscriber: %v", err)
			}
			return m.MsgID
		}
		if err := b.WaitSubscribers(ctxT(t), "", 1); err != nil {
			t.Fatal(err)
		}
		first, err := b.Publish(context.Background(), "stored", "x")
		if err != nil {
			t.Fatal(err)
		}
		if id := next(); id != first.MsgID {
			t.Fatalf("subscriber saw %s first, want %s", id, first.MsgID)
		}
		db, err := sql.Open("sqlite3", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		_, err = b.Publish(context.Background(), "stored", "x")
		var se *gilmsg.StoreError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
			t.Fatalf("publishing into a locked store: %v", err)
		}
		conn.ExecContext(context.Background(), "ROLLBACK")
		after, err := b.Publish(context.Background(), "stored", "x")
		if err != nil {
			t.Fatalf("after the lock went: %v", err)
		}
		if id := next(); id != after.MsgID {
			t.Fatalf("subscriber saw %s after the failed publish (%s), want %s: the unstored message was sent", id, se.MsgID, after.MsgID)
		}
	})
}

// TestPostgresLost: a PostgreSQL server that stays away longer than the
// store timeout fails publishes with an error saying so; when it is back,
// they work again.
func TestPostgresLost(t *testing.T) {
	url := testenv.Postgres(t)
	st := openStore(t, url)
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil, gilmsg.WithStoreTimeout(time.Second))
	publishN(t, b, 1, 1)
	testenv.PostgresStop(t)
	restarted := false
	defer func() {
		if !restarted {
			testenv.PostgresStart(t)
		}
	}()
	_, err := b.Publish(context.Background(), "stored", "x")
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("publishing with PostgreSQL down: %v", err)
	}
	testenv.PostgresStart(t)
	restarted = true
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := b.Publish(context.Background(), "stored", "x")
		if err == nil {
			if r.SeqID < 2 {
				t.Fatalf("seq_id %d after the restart", r.SeqID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL is back but publishing still fails: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A PostgreSQL restart shorter than the store timeout, while publishers
// publish, costs no message and no error: each transaction that lost its
// connection is done again on a new one, with new seq_ids; every
// publish's seq_id is stored once, holding that message.
func TestPostgresRestartLosesNothing(t *testing.T) {
	st := openStore(t, testenv.Postgres(t))
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil)
	type sent struct {
		seq int64
		id  string
	}
	var mu sync.Mutex
	var got []sent
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := b.Publish(context.Background(), "stored", "x")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got = append(got, sent{r.SeqID, r.MsgID})
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitCount := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for count() < n && len(errs) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(50)
	testenv.PostgresStop(t)
	testenv.PostgresStart(t)
	waitCount(count() + 50)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish across a restart: %v", err)
	}
	rows, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64]string{}
	for _, m := range rows {
		env, err := gilmsg.ParseEnvelope(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		stored[m.SeqID] = env.MsgID
	}
	seen := map[int64]bool{}
	for _, s := range got {
		if seen[s.seq] {
			t.Fatalf("seq_id %d given twice", s.seq)
		}
		seen[s.seq] = true
		if stored[s.seq] != s.id {
			t.Fatalf("seq_id %d: stored %q, published %q", s.seq, stored[s.seq], s.id)
		}
	}
	if len(rows) != len(got) {
		t.Errorf("%d rows for %d publishes", len(rows), len(got))
	}
	t.Logf("%d published, %d stored, across a restart", len(got), len(rows))
}

// A frozen PostgreSQL server (SIGSTOP: a host that hangs) fails a publish
// once the store timeout is over, and Close does not wait for it either.
// About 9 s (Close waits its 5 s bound): with GILMSG_LONG=1 only.
func TestPostgresFrozen(t *testing.T) {
	if os.Getenv("GILMSG_LONG") == "" {
		t.Skip("GILMSG_LONG=1 runs it")
	}
	st, err := sqlstore.Open(ctxT(t), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newPublisher(t, "pub", []string{"tcp://127.0.0.1:*"}, st, nil, gilmsg.WithStoreTimeout(time.Second))
	publishN(t, b, 1, 1)
	thaw := testenv.PostgresFreeze(t)
	within := func(what string, d time.Duration, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(d):
			thaw()
			t.Fatalf("%s still waiting after %v", what, d)
		}
		return nil
	}
	err = within("a publish", 15*time.Second, func() error {
		_, err := b.Publish(context.Background(), "stored", "x")
		return err
	})
	var se *gilmsg.StoreError
	if !errors.As(err, &se) {
		t.Fatalf("publish to a frozen server: %v, want a StoreError", err)
	}
	b.Close()
	err = within("the store's Close", 15*time.Second, st.Close)
	t.Logf("publish: %v; Close: %v", se, err)
}

// A bus that signs stores its messages signed, seq_id included: what a
// replay server sends again validates as the publisher's.
func TestStoredMessageIsSigned(t *testing.T) {
	const cn = "publisher01.example.org"
	pki, err := devpki.New(t.TempDir(), devpki.Options{KeyBits: 1024, Hosts: []string{cn}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.Config()
	cfg.Name = cn
	cfg.Endpoints = map[string][]string{cn: {"tcp://127.0.0.1:*"}}
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b, err := gilmsg.New(cfg, gilmsg.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := b.Publish(ctxT(t), "stored", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.Query(ctxT(t), &gilmsg.Query{SeqIDs: []int64{r.SeqID}})
	if err != nil || len(rows) != 1 {
		t.Fatalf("query: %v, %d rows", err, len(rows))
	}
	env, err := gilmsg.ParseEnvelope(rows[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := env.SeqID(); seq != r.SeqID {
		t.Fatalf("stored seq_id %d, published %d", seq, r.SeqID)
	}
	signer, err := b.Validator().Validate(env)
	if err != nil || signer != cn {
		t.Fatalf("the stored message: signer %q, %v; want it signed by %s", signer, err, cn)
	}
}

// On a bus with a store, Seal leaves the signature for SendSealed: the
// messages are stored in the order given to SendSealed, with consecutive
// seq_ids, each signed over its own.
func TestSendSealedStoresSigned(t *testing.T) {
	const cn = "publisher01.example.org"
	pki, err := devpki.New(t.TempDir(), devpki.Options{KeyBits: 1024, Hosts: []string{cn}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.Config()
	cfg.Name = cn
	cfg.Endpoints = map[string][]string{cn: {"tcp://127.0.0.1:*"}}
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	b, err := gilmsg.New(cfg, gilmsg.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 5
	sealed := make([]*gilmsg.SealedMessage, n)
	for i := range n {
		if sealed[n-1-i], err = b.Seal("stored", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	receipts, err := b.SendSealed(ctxT(t), sealed...)
	if err != nil || len(receipts) != n {
		t.Fatalf("SendSealed: %d receipts, %v", len(receipts), err)
	}
	rows, err := st.Query(ctxT(t), &gilmsg.Query{All: true})
	if err != nil || len(rows) != n {
		t.Fatalf("query: %v, %d rows", err, len(rows))
	}
	for k, row := range rows {
		env, err := gilmsg.ParseEnvelope(row.Body)
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := env.SeqID()
		signer, verr := b.Validator().Validate(env)
		var msg struct{ I int }
		if err := env.Decode(&msg); err != nil {
			t.Fatal(err)
		}
		if seq != row.SeqID || row.SeqID != receipts[k].SeqID || row.SeqID != receipts[0].SeqID+int64(k) || msg.I != n-1-k || signer != cn || verr != nil {
			t.Fatalf("row %d: seq_id %d (in its body %d, receipt %d) holds i=%d, signer %q, %v; want i=%d signed by %s",
				k, row.SeqID, seq, receipts[k].SeqID, msg.I, signer, verr, n-1-k, cn)
		}
	}
}
