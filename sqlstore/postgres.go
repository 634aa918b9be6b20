package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

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
	ph: func(n int) string { return "$" + strconv.Itoa(n) },
	inInts: func(args *[]any, ids []int64) string {
		*args = append(*args, ids)
		return "(SELECT unnest($" + strconv.Itoa(len(*args)) + "::bigint[]))"
	},
	inStrs: func(args *[]any, ids []string) string {
		*args = append(*args, ids)
		return "(SELECT unnest($" + strconv.Itoa(len(*args)) + "::varchar[]))"
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
	case pgconn.SafeToRetry(err), errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("lost the connection to PostgreSQL: %w", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03") {
		return fmt.Errorf("lost the connection to PostgreSQL (server shut down): %w", err)
	}
	return err
}

func (s *pgStore) Append(ctx context.Context, b *gilmsg.Batch) (err error) {
	defer func() {
		if err != nil {
			err = &Error{Store: s.name, Op: "append", Err: explainPG(err)}
		}
	}()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	// nextval is outside transactions: ids taken here are never given to
	// anyone else, even if this transaction rolls back (which leaves a hole
	// in the sequence, as SQLAlchemy's inserts do).
	rows, err := tx.Query(ctx, "SELECT nextval($1::regclass) FROM generate_series(1, $2)", s.seq, len(b.Entries))
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	if err := b.Seal(ids); err != nil {
		return err
	}
	n := len(b.Entries)
	seqs, uuids, topics, times, msgs := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, e := range b.Entries {
		seqs[i], uuids[i], topics[i], times[i], msgs[i] = e.SeqID, e.MsgID, e.Topic, localTime(float64(e.Timestamp)), string(e.Body)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fedmsg_messages (seq_id, uuid, topic, timestamp, msg)
		SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::timestamp[], $5::text[])`,
		seqs, uuids, topics, times, msgs); err != nil {
		return err
	}
	return tx.Commit(ctx)
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

func (s *pgStore) Close() error {
	s.pool.Close()
	return nil
}

func (s *pgStore) String() string { return s.name }
