package sqlstore_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// The store's checkpoints run beside its writer, not in its COMMITs:
// under commits that never pause, the WAL still starts over, and stays
// within a few checkpoints' worth (of SQLite's 1000 pages, 4 MB here;
// the writer waits past 4 of them), and every row reaches the database
// file once the store is closed.
func TestSQLiteWALStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	st := openStore(t, "sqlite:///"+path)
	body := []byte(`{"msg": "` + strings.Repeat("x", 1000) + `"}`)
	const batches, perBatch = 1600, 40 // about 65 MB
	var maxWAL int64
	for i := range batches {
		entries := make([]*gilmsg.StoreEntry, perBatch)
		for j := range entries {
			entries[j] = &gilmsg.StoreEntry{MsgID: fmt.Sprintf("2026-%d-%d", i, j), Topic: "org.fedoraproject.dev.wal", Timestamp: 1765000000,
				Encode: func(int64) ([]byte, error) { return body, nil }}
		}
		if err := st.Append(ctxT(t), &gilmsg.Batch{Entries: entries}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	// Without the writer's own copy of what is left, the WAL grows with
	// every byte written (65 MB); SQLite's own checkpoints kept it at
	// about 4 MB.
	if maxWAL > 32<<20 {
		t.Errorf("the WAL grew to %d bytes for %d written", maxWAL, batches*perBatch*len(body))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, maxSeq int64
	if err := db.QueryRow("SELECT COUNT(*), MAX(seq_id) FROM fedmsg_messages").Scan(&n, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if n != batches*perBatch || maxSeq != n {
		t.Fatalf("%d rows up to seq_id %d, want %d", n, maxSeq, batches*perBatch)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("the WAL holds %d bytes after Close (SQLite checkpoints it at the last close)", fi.Size())
	}
}
