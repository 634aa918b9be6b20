package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The DDL SQLAlchemy emits for fedmsg's SqlMessage on PostgreSQL, but
// for uuid: fedmsg declares VARCHAR(36), too short for its own msg_ids
// ("<year>-<uuid4>", 41 characters). SQLite ignores the length; PostgreSQL
// enforces it, so that Python's SqlStore fails every insert into a table
// it created itself. Both languages read and write the wider column.
const postgresDDL = `CREATE TABLE IF NOT EXISTS fedmsg_messages (
	seq_id SERIAL NOT NULL, 
	uuid VARCHAR(64), 
	topic VARCHAR, 
	timestamp TIMESTAMP WITHOUT TIME ZONE, 
	msg TEXT, 
	PRIMARY KEY (seq_id)
)`

// msgIDLen is the length of a fedmsg msg_id: "2026-" and a UUID.
const msgIDLen = 41

type pgStore struct {
	pool *pgxpool.Pool
	name string
	seq  string // the sequence behind seq_id
}

var pgDialect = dialect{
	inInts: func(args *[]any, ids []int64) string {
		*args = append(*args, ids)
		return "(SELECT unnest($" + strconv.Itoa(len(*args)) + "::bigint[]))"
	},
	inStrs: func(args *[]any, ids []string) string {
		*args = append(*args, ids)
		return "(SELECT unnest($" + strconv.Itoa(len(*args)) + "::varchar[]))"
	},
	intArg: func(args *[]any, v int64) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args)) + "::bigint"
	},
	timeArg: func(args *[]any, s string) string {
		*args = append(*args, s)
		return "$" + strconv.Itoa(len(*args)) + "::timestamp"
	},
}

func openPostgres(ctx context.Context, rawURL, connURL string) (_ gilmsg.Store, err error) {
	name := redact(rawURL)
	fail := func(err error) error { return &Error{Store: name, Op: "open", Err: explainPG(err)} }
	cfg, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		return nil, &Error{Store: name, Op: "open", Err: fmt.Errorf("%w: %v", ErrUnsupportedURL, err)}
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	cfg.MaxConns = 4
	st := &pgStore{name: name}
	if st.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fail(err)
	}
	defer func() {
		if err != nil {
			st.pool.Close()
		}
	}()
	if err := st.createTable(ctx); err != nil {
		return nil, fail(err)
	}
	if _, err := st.pool.Exec(ctx, "SELECT seq_id, uuid, topic, timestamp, msg FROM fedmsg_messages LIMIT 0"); err != nil {
		return nil, fail(fmt.Errorf("table fedmsg_messages is not fedmsg's layout (seq_id, uuid, topic, timestamp, msg): %w", err))
	}
	var width *int
	if err := st.pool.QueryRow(ctx, `SELECT character_maximum_length FROM information_schema.columns
		WHERE table_name = 'fedmsg_messages' AND column_name = 'uuid' AND table_schema = current_schema()`).Scan(&width); err != nil {
		return nil, fail(err)
	}
	if width != nil && *width < msgIDLen {
		return nil, fail(fmt.Errorf("fedmsg_messages.uuid is VARCHAR(%d), too short for a msg_id of %d characters "+
			"(fedmsg's own layout; widen it: ALTER TABLE fedmsg_messages ALTER COLUMN uuid TYPE VARCHAR(64))", *width, msgIDLen))
	}
	var seq *string
	if err := st.pool.QueryRow(ctx, "SELECT pg_get_serial_sequence('fedmsg_messages', 'seq_id')").Scan(&seq); err != nil {
		return nil, fail(err)
	}
	if seq == nil {
		return nil, fail(errors.New("fedmsg_messages.seq_id has no sequence (it must be SERIAL, as SQLAlchemy creates it)"))
	}
	st.seq = *seq
	return st, nil
}

// createTable tolerates another process creating the table at the same
// time: CREATE TABLE IF NOT EXISTS is not safe against that in PostgreSQL.
func (s *pgStore) createTable(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, postgresDDL)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07") {
		return nil
	}
	return err
}

// explainPG names a lost or refused connection as such.
func explainPG(err error) error {
	var ne net.Error
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("cannot connect to PostgreSQL: %w", err)
	case pgconn.Timeout(err):
		return fmt.Errorf("PostgreSQL did not answer in time: %w", err)
	case pgconn.SafeToRetry(err), errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("lost the connection to PostgreSQL: %w", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03") {
		return fmt.Errorf("lost the connection to PostgreSQL (server shut down): %w", err)
	}
	return err
}

// Append retries a transaction that lost its connection (a server
// restart, a failover, a killed backend) on a fresh one, with backoff,
// until ctx ends: a restart shorter than the caller's timeout costs no
// message. Each attempt takes new seq_ids, so none is given twice (the
// sequence keeps the ids of a lost attempt as a hole). When the
// connection was lost during COMMIT, whether it committed is unknown:
// the next attempt first looks for those seq_ids, and is over if they
// are stored.
func (s *pgStore) Append(ctx context.Context, b *gilmsg.Batch) error {
	var unsure []int64 // the seq_ids of an attempt lost during COMMIT
	wait := retryFirst
	for attempt := 1; ; attempt++ {
		var err error
		if unsure != nil {
			var stored bool
			if stored, err = s.stored(ctx, unsure); err == nil && stored {
				return nil
			}
			if err == nil {
				unsure = nil
			}
		}
		if err == nil {
			var ids []int64
			ids, err = s.append(ctx, b)
			if err == nil {
				return nil
			}
			if ids != nil {
				unsure = ids
			}
		}
		if !connectionLost(err) || ctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return &Error{Store: s.name, Op: "append", Err: explainPG(err)}
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return &Error{Store: s.name, Op: "append", Err: fmt.Errorf("%w (gave up after %d attempts: %v)", explainPG(err), attempt, ctx.Err())}
		}
		wait = min(2*wait, retryMost)
	}
}

// The backoff between attempts of a transaction that lost its connection.
const (
	retryFirst = 50 * time.Millisecond
	retryMost  = time.Second
)

// connectionLost reports an error after which the same transaction may
// succeed on another connection: the connection failed or could not be
// made, or the server is shutting down or starting up. Other server
// errors are answers, not retried.
func connectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err) || errors.As(err, &ne) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// stored reports whether every one of ids is in the table.
func (s *pgStore) stored(ctx context.Context, ids []int64) (bool, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM fedmsg_messages WHERE seq_id = ANY($1::bigint[])", ids).Scan(&n)
	return n == len(ids), err
}

// append is one attempt of Append. It returns the seq_ids it sealed b
// with when it failed in COMMIT, where the outcome is unknown.
func (s *pgStore) append(ctx context.Context, b *gilmsg.Batch) ([]int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	// nextval is outside transactions: ids taken here are never given to
	// anyone else, even if this transaction rolls back (which leaves a hole
	// in the sequence, as SQLAlchemy's inserts do).
	rows, err := tx.Query(ctx, "SELECT nextval($1::regclass) FROM generate_series(1, $2)", s.seq, len(b.Entries))
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if err := b.Seal(ids); err != nil {
		return nil, err
	}
	n := len(b.Entries)
	seqs, uuids, topics, times, msgs := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, e := range b.Entries {
		seqs[i], uuids[i], topics[i], times[i], msgs[i] = e.SeqID, e.MsgID, e.Topic, localTime(float64(e.Timestamp)), string(e.Body)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fedmsg_messages (seq_id, uuid, topic, timestamp, msg)
		SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::timestamp[], $5::text[])`,
		seqs, uuids, topics, times, msgs); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return ids, err
	}
	return nil, nil
}

func (s *pgStore) Query(ctx context.Context, q *gilmsg.Query) ([]gilmsg.StoredMessage, error) {
	where, args := pgDialect.where(q)
	rows, err := s.pool.Query(ctx, "SELECT seq_id, msg FROM fedmsg_messages WHERE "+where, args...)
	if err != nil {
		return nil, &Error{Store: s.name, Op: "query", Err: explainPG(err)}
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gilmsg.StoredMessage, error) {
		var m gilmsg.StoredMessage
		var body string
		err := r.Scan(&m.SeqID, &body)
		m.Body = []byte(body)
		return m, err
	})
	if err != nil {
		return nil, &Error{Store: s.name, Op: "query", Err: explainPG(err)}
	}
	return out, nil
}

// Close waits at most closeWait for the pool's connections to close: pgx
// gives a server that does not answer (stopped, or its host gone) up to
// 15 s per connection, which it then spends in the background.
func (s *pgStore) Close() error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pool.Close()
	}()
	select {
	case <-done:
		return nil
	case <-time.After(closeWait):
		return &Error{Store: s.name, Op: "close", Err: fmt.Errorf("the server did not answer within %v; its connections are closing in the background", closeWait)}
	}
}

// closeWait bounds Close: nothing is left to write by then, so a server
// that does not answer is not waited for.
const closeWait = 5 * time.Second

func (s *pgStore) String() string { return s.name }
