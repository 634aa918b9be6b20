package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unsafe"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/mattn/go-sqlite3"
)

// The DDL SQLAlchemy emits for fedmsg's SqlMessage on SQLite.
const sqliteDDL = `CREATE TABLE IF NOT EXISTS fedmsg_messages (
	seq_id INTEGER NOT NULL, 
	uuid VARCHAR(36), 
	topic VARCHAR, 
	timestamp DATETIME, 
	msg TEXT, 
	PRIMARY KEY (seq_id)
)`

// busyTimeoutMS (the URL's busy_timeout overrides it) is how long a write waits for another process's lock
// (Python's sqlite3 waits 5 s too) before failing with "database is locked".
const busyTimeoutMS = 5000

type sqliteStore struct {
	db   *sql.DB
	name string
	busy int // ms
	wal  *walCheckpointer
}

var sqliteDialect = dialect{
	intArg: func(args *[]any, v int64) string {
		*args = append(*args, v)
		return "?"
	},
	inInts: func(args *[]any, ids []int64) string {
		for _, id := range ids {
			*args = append(*args, id)
		}
		return "(" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
	},
	inStrs: func(args *[]any, ids []string) string {
		for _, id := range ids {
			*args = append(*args, id)
		}
		return "(" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
	},
	timeArg: func(args *[]any, s string) string { *args = append(*args, s); return "?" },
}

func openSQLite(ctx context.Context, rawURL, rest string) (_ gilmsg.Store, err error) {
	// rest is "/PATH" for sqlite:///PATH: SQLAlchemy drops the one slash
	// that separates the (empty) host from the path.
	path, query, _ := strings.Cut(rest, "?")
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return nil, fmt.Errorf("%w: %q names no file (in-memory stores cannot be shared with a replay server)", ErrUnsupportedURL, rawURL)
	}
	sync, busy := "NORMAL", busyTimeoutMS
	if query != "" {
		v, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrUnsupportedURL, rawURL, err)
		}
		if s := v.Get("synchronous"); s != "" {
			switch strings.ToUpper(s) {
			case "OFF", "NORMAL", "FULL", "EXTRA":
				sync = strings.ToUpper(s)
			default:
				return nil, fmt.Errorf("%w: %q: synchronous=%s (want off, normal, full or extra)", ErrUnsupportedURL, rawURL, s)
			}
		}
		if s := v.Get("busy_timeout"); s != "" {
			if busy, err = strconv.Atoi(s); err != nil || busy < 0 {
				return nil, fmt.Errorf("%w: %q: busy_timeout=%s (want milliseconds)", ErrUnsupportedURL, rawURL, s)
			}
		}
	}
	st := &sqliteStore{name: rawURL, busy: busy}
	fail := func(err error) error { return &Error{Store: rawURL, Op: "open", Err: st.explain(err)} }
	// The statement cache keeps Append's statements (one INSERT a chunk
	// size, the MAX) prepared on each connection: parsing a multi-row
	// INSERT cost more than running it.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + fmt.Sprintf("?_busy_timeout=%d&_txlock=immediate&_synchronous=%s&_journal_mode=WAL&_stmt_cache_size=%d", busy, sync, stmtCacheSize)
	if st.db, err = sql.Open(sqliteDriver, dsn); err != nil {
		return nil, fail(err)
	}
	defer func() {
		if err != nil {
			st.db.Close()
		}
	}()
	// One writer at a time anyway, the checkpointer, a few readers for
	// replay servers.
	st.db.SetMaxOpenConns(5)
	if _, err := st.db.ExecContext(ctx, sqliteDDL); err != nil {
		return nil, fail(err)
	}
	if err := checkLayout(ctx, st.db); err != nil {
		return nil, fail(err)
	}
	var pageSize int64
	if err := st.db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return nil, fail(err)
	}
	st.wal = newWALCheckpointer(st.db, pageSize)
	return st, nil
}

// checkLayout fails when fedmsg_messages exists without fedmsg's columns.
func checkLayout(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT seq_id, uuid, topic, timestamp, msg FROM fedmsg_messages LIMIT 0")
	if err != nil {
		return fmt.Errorf("table fedmsg_messages is not fedmsg's layout (seq_id, uuid, topic, timestamp, msg): %w", err)
	}
	return rows.Close()
}

// explain adds what a user needs to know to SQLite's terse errors.
func (s *sqliteStore) explain(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("the database is locked by another process or transaction (waited %d ms): %w", s.busy, err)
		case sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
			return fmt.Errorf("not a usable SQLite database (corrupt, or another kind of file): %w", err)
		case sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrReadonly:
			return fmt.Errorf("cannot open or write the database file: %w", err)
		}
	}
	return err
}

func (s *sqliteStore) Append(ctx context.Context, b *gilmsg.Batch) (err error) {
	defer func() {
		if err != nil {
			err = &Error{Store: s.name, Op: "append", Err: s.explain(err)}
		}
	}()
	// _txlock=immediate: the write lock is taken at BEGIN, so that the
	// seq_ids read below stay ours until COMMIT.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq_id), 0) FROM fedmsg_messages").Scan(&last); err != nil {
		return err
	}
	ids := make([]int64, len(b.Entries))
	for i := range ids {
		ids[i] = last + 1 + int64(i)
	}
	if err := b.Seal(ids); err != nil {
		return err
	}
	// Multi-row INSERTs of a few fixed sizes, kept prepared: a round trip
	// through database/sql and cgo per row, or parsing a statement the
	// size of each batch, would cost more than SQLite's work.
	args := make([]any, 0, 5*min(len(b.Entries), insertChunks[0]))
	var ts timeText
	var written int64
	for rest := b.Entries; len(rest) > 0; {
		k := chunkFor(len(rest))
		args = args[:0]
		for _, e := range rest[:k] {
			// The body is bound as TEXT (Python reads a str), without a
			// copy: SQLite copies it, and nothing changes it meanwhile.
			args = append(args, e.SeqID, e.MsgID, e.Topic, ts.of(e.Timestamp), unsafe.String(unsafe.SliceData(e.Body), len(e.Body)))
			written += rowBytes(e.Body, e.MsgID, e.Topic)
		}
		if _, err := tx.ExecContext(ctx, insertSQL[k], args...); err != nil {
			return err
		}
		rest = rest[k:]
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.wal.committed(ctx, written)
	return nil
}

// insertChunks are the row counts of Append's INSERTs, largest first: a
// batch is stored by the fewest of them (43 rows: 32, 8, 2, 1).
var insertChunks = []int{64, 32, 16, 8, 4, 2, 1}

// stmtCacheSize holds every INSERT of insertChunks and the MAX, with room
// for a replay server's queries on the same connection.
const stmtCacheSize = 16

var insertSQL = func() map[int]string {
	m := make(map[int]string, len(insertChunks))
	for _, k := range insertChunks {
		m[k] = "INSERT INTO fedmsg_messages (seq_id, uuid, topic, timestamp, msg) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?),", k), ",")
	}
	return m
}()

// chunkFor is the largest of insertChunks that n rows fill.
func chunkFor(n int) int {
	for _, k := range insertChunks {
		if k <= n {
			return k
		}
	}
	return 1
}

// timeText is localTime for the entries of one batch, which mostly share
// their second: formatted once per second seen in a row.
type timeText struct {
	sec  int64
	text string
}

func (t *timeText) of(sec int64) string {
	if t.text == "" || t.sec != sec {
		t.sec, t.text = sec, localTime(float64(sec))
	}
	return t.text
}

func (s *sqliteStore) Query(ctx context.Context, q *gilmsg.Query) (_ []gilmsg.StoredMessage, err error) {
	where, args := sqliteDialect.where(q)
	rows, err := s.db.QueryContext(ctx, "SELECT seq_id, msg FROM fedmsg_messages WHERE "+where, args...)
	if err != nil {
		return nil, &Error{Store: s.name, Op: "query", Err: s.explain(err)}
	}
	return s.scanRows(rows)
}

func (s *sqliteStore) scanRows(rows *sql.Rows) ([]gilmsg.StoredMessage, error) {
	defer rows.Close()
	var out []gilmsg.StoredMessage
	for rows.Next() {
		var m gilmsg.StoredMessage
		var body string
		if err := rows.Scan(&m.SeqID, &body); err != nil {
			return nil, &Error{Store: s.name, Op: "query", Err: s.explain(err)}
		}
		m.Body = []byte(body)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, &Error{Store: s.name, Op: "query", Err: s.explain(err)}
	}
	return out, nil
}

func (s *sqliteStore) Close() error {
	s.wal.close()
	return s.db.Close()
}

func (s *sqliteStore) String() string { return s.name }
