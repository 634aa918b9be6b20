// Package sqlstore keeps published messages in fedmsg's SqlStore table, so
// that one SQLite file or PostgreSQL database serves Python fedmsg and
// gilmsg-go alike (WIRE.md §11):
//
//	fedmsg_messages(seq_id INTEGER PRIMARY KEY, uuid VARCHAR(36), topic VARCHAR,
//	                timestamp DATETIME, msg TEXT)
//
// uuid is the msg_id, timestamp the envelope's timestamp as a local naive
// date and time (as Python's datetime.fromtimestamp writes it), msg the
// whole message as JSON, seq_id included.
//
// [Open] takes persistent_store, an SQLAlchemy-style URL:
//
//   - sqlite:///ABS/PATH (so "sqlite:////var/lib/x.db"; three slashes and a
//     relative path are relative to the working directory, as in
//     SQLAlchemy): the embedded store of one host. The file is switched to
//     WAL mode, so that replay servers read while publishers write, with
//     synchronous=NORMAL: a crashed process loses nothing it stored, a
//     power cut may lose the last transactions. The store copies the WAL
//     into the database file (checkpoints) on a goroutine of its own, not
//     in its writes' commits, so the WAL file grows to about 5,000 pages
//     (about 20 MB at SQLite's 4 KiB) where SQLite's own checkpoints keep
//     it near 1,000. Add ?synchronous=full to the URL for an fsync per
//     transaction (group commit shares it), and ?busy_timeout=MS to
//     change how long a write waits for another process's lock (5000 ms)
//     before failing with "locked".
//   - postgresql://user:pass@host:port/db (also postgres://, and
//     postgresql+psycopg2:// as SQLAlchemy spells it): a store shared by
//     every process of a service, on several hosts. seq_ids come from the
//     table's sequence. uuid is VARCHAR(64) there: fedmsg's VARCHAR(36)
//     cannot hold a msg_id, and PostgreSQL enforces it (an existing
//     36-character column is refused, naming the ALTER TABLE that fixes
//     it).
//
// The table is created when missing, with the DDL SQLAlchemy would use.
//
// Importing the package registers these schemes with [gilmsg.RegisterStore],
// so that [gilmsg.New] opens persistent_store from the configuration alone:
//
//	import _ "github.com/gilmsg/gilmsg-go/sqlstore"
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// ErrUnsupportedURL means persistent_store is not a URL this package opens.
var ErrUnsupportedURL = errors.New("sqlstore: unsupported persistent_store URL")

// Error says which store failed, and how.
type Error struct {
	Store string // the URL, password hidden
	Op    string // "open", "append", "query"
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("sqlstore: %s %s: %v", e.Op, e.Store, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

func init() {
	for _, scheme := range []string{"sqlite", "postgresql", "postgres"} {
		gilmsg.RegisterStore(scheme, Open)
	}
}

// Open opens (and creates, when missing) the store at rawURL.
func Open(ctx context.Context, rawURL string) (gilmsg.Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("%w: %q has no scheme (want sqlite:///PATH or postgresql://...)", ErrUnsupportedURL, rawURL)
	}
	driver, _, _ := strings.Cut(scheme, "+")
	switch driver {
	case "sqlite":
		return openSQLite(ctx, rawURL, rest)
	case "postgresql", "postgres":
		return openPostgres(ctx, rawURL, "postgresql://"+rest)
	}
	return nil, fmt.Errorf("%w: scheme %q (want sqlite or postgresql)", ErrUnsupportedURL, scheme)
}

// redact hides the password of a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// localTime is how SQLAlchemy writes Python's datetime.fromtimestamp(ts)
// into SQLite: the local date and time, naive.
func localTime(sec float64) string {
	s := int64(sec)
	ns := int64((sec - float64(s)) * 1e9)
	return time.Unix(s, ns).Local().Format("2006-01-02 15:04:05.000000")
}

// dialect is how one database takes the arguments of [dialect.where]:
// each function appends its argument(s) and returns the placeholder(s).
type dialect struct {
	inInts  func(args *[]any, ids []int64) string
	inStrs  func(args *[]any, ids []string) string
	timeArg func(args *[]any, s string) string
	// intArg is a seq_id bound. PostgreSQL's seq_id is int4 (SERIAL), and
	// would take a bare placeholder as int4 too: a bound past 2^31-1, such
	// as the open end of a catch-up, then fails to encode.
	intArg func(args *[]any, v int64) string
}

func (d dialect) where(q *gilmsg.Query) (string, []any) {
	var args []any
	var or []string
	if len(q.SeqIDs) > 0 {
		or = append(or, "seq_id IN "+d.inInts(&args, q.SeqIDs))
	}
	if r := q.SeqIDRange; r != nil {
		or = append(or, "seq_id BETWEEN "+d.intArg(&args, r[0])+" AND "+d.intArg(&args, r[1]))
	}
	if len(q.MsgIDs) > 0 {
		or = append(or, "uuid IN "+d.inStrs(&args, q.MsgIDs))
	}
	if t := q.Time; t != nil {
		or = append(or, "timestamp BETWEEN "+d.timeArg(&args, localTime(t[0]))+" AND "+d.timeArg(&args, localTime(t[1])))
	}
	if q.All {
		or = append(or, "1=1")
	}
	if len(or) == 0 {
		or = append(or, "1=0")
	}
	// A row whose msg is still empty is one Python's SqlStore.add has not
	// finished (it inserts, then fills msg in a second commit).
	w := "(" + strings.Join(or, " OR ") + ") AND msg <> ''"
	if q.AfterSeqID > 0 {
		w += " AND seq_id > " + d.intArg(&args, q.AfterSeqID)
	}
	w += " ORDER BY seq_id"
	if q.Limit > 0 {
		w += " LIMIT " + strconv.Itoa(q.Limit)
	}
	return w, args
}

// defaultConnectTimeout bounds a PostgreSQL connection attempt when the URL
// sets no connect_timeout: a server that does not answer is an error, not
// a hang.
const defaultConnectTimeout = 10 * time.Second
