package gilmsg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/jsonval"
)

// Store keeps what a bus publishes, so that a replay server can send it
// again to subscribers that missed it (WIRE.md §11). Package sqlstore
// provides fedmsg's SqlStore layout over SQLite and PostgreSQL; a bus uses
// a store given with [WithStore].
//
// A store is used by many goroutines at once (a bus's writer, replay
// servers); implementations must be safe for that.
type Store interface {
	// Append stores batch in one transaction: it takes len(batch.Entries)
	// seq_ids from the store's counter, calls batch.Seal with them while
	// the transaction is open, and writes the sealed bodies. Either every
	// entry is stored or none is.
	Append(ctx context.Context, batch *Batch) error
	// Query returns the stored messages that match q, in seq_id order, at
	// most q.Limit of them (no limit when it is 0).
	Query(ctx context.Context, q *Query) ([]StoredMessage, error)
	// Close releases the store. A bus never closes the store it was given.
	Close() error
}

// StoredMessage is one message as a store holds it.
type StoredMessage struct {
	SeqID int64
	Body  []byte // the whole message as JSON (Python writes json.dumps of it)
}

// Query is one replay request (WIRE.md §11): a message matches when it
// matches any one of the keys given (they are OR-ed), and AfterSeqID.
type Query struct {
	SeqIDs     []int64     // seq_id and seq_ids
	SeqIDRange *[2]int64   // seq_id_range, inclusive
	MsgIDs     []string    // msg_id and msg_ids
	Time       *[2]float64 // time: Unix seconds, inclusive
	All        bool        // the request named none of the keys: everything
	// AfterSeqID keeps only seq_ids above it (paging; 0 keeps all). It is
	// AND-ed with the keys above.
	AfterSeqID int64
	Limit      int
}

// Batch is the messages one [Store.Append] writes in one transaction.
type Batch struct {
	Entries []*StoreEntry
}

// StoreEntry is one message on its way into a store. MsgID, Topic and
// Timestamp are known before the store is asked; SeqID and Body are set by
// [Batch.Seal].
type StoreEntry struct {
	MsgID     string
	Topic     string
	Timestamp int64 // Unix seconds, the envelope's timestamp
	SeqID     int64
	Body      []byte // the body as sent, seq_id included, signed if signing

	// Encode returns the message's body with seq_id set to seqID (signed,
	// when the bus signs). A bus sets it; other writers of a store may too.
	Encode func(seqID int64) ([]byte, error)

	// spliced: Encode only splices the seq_id into a body encoded before
	// (an unsigned message), too little work to hand to another goroutine.
	spliced bool
}

// Seal gives entry i the seq_id ids[i], then signs (when the bus signs) and
// encodes it, on up to GOMAXPROCS goroutines: signing is the costly part of
// a stored publish, and the transaction waits for it. An unsigned message
// of a bus was encoded before, without its seq_id: sealing it only
// splices the seq_id in.
func (b *Batch) Seal(ids []int64) error {
	if len(ids) != len(b.Entries) {
		return fmt.Errorf("gilmsg: store gave %d seq_ids for %d messages", len(ids), len(b.Entries))
	}
	if b.spliced() {
		var errs []error
		for i, e := range b.Entries {
			e.SeqID = ids[i]
			var err error
			if e.Body, err = e.Encode(ids[i]); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	errs := make([]error, len(b.Entries))
	onEveryCore(len(b.Entries), func(i int) {
		e := b.Entries[i]
		e.SeqID = ids[i]
		e.Body, errs[i] = e.Encode(ids[i])
	})
	return errors.Join(errs...)
}

// spliced says whether every entry's Encode only splices a seq_id in.
func (b *Batch) spliced() bool {
	for _, e := range b.Entries {
		if !e.spliced {
			return false
		}
	}
	return true
}

// WithStore makes the bus store every message it publishes (ACKs aside) in
// st before sending it: the message gets its seq_id from the store's
// counter, is signed with it, and is written, all before it leaves. Writes
// from concurrent publishes share one transaction (group commit). Default:
// no store.
func WithStore(st Store) Option { return func(o *options) { o.store = st } }

// WithStoreTimeout bounds each write to the store: a publish whose
// message could not be stored within d fails with a [StoreError], and is
// not sent. A store may retry within it (sqlstore does, on a fresh
// connection, when PostgreSQL restarts). Default [DefaultStoreTimeout];
// d <= 0 keeps it.
func WithStoreTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.storeTimeout = d
		}
	}
}

// DefaultStoreTimeout is how long a publish waits for the store unless
// [WithStoreTimeout] says otherwise: long enough for a PostgreSQL restart
// or failover, short enough that a server gone without a word fails the
// publishes instead of hanging them.
const DefaultStoreTimeout = 30 * time.Second

// StoreURL returns persistent_store when it is a URL string, else "".
func (c *Config) StoreURL() string {
	s, _ := c.PersistentStore.(string)
	return s
}

// StoreError says that a message could not be stored, so it was not sent.
type StoreError struct {
	MsgID string
	Err   error
}

func (e *StoreError) Error() string {
	return fmt.Sprintf("gilmsg: message %s not sent: storing it failed: %v", e.MsgID, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// storeWriter is the bus's group commit: one goroutine takes whatever
// publishes have queued, up to maxStoreBatch messages, and stores them in
// one Append while the next ones queue. The messages of one request stay
// together and in their order: a batch publish gets consecutive seq_ids.
type storeWriter struct {
	st      Store
	timeout time.Duration // of one Append
	log     *slog.Logger
	hooks   *Hooks
	reqs    chan *storeReq
	stop    chan struct{}
	done    chan struct{}
}

type storeReq struct {
	entries []*StoreEntry
	err     chan error
	queued  time.Time
}

const maxStoreBatch = 512

// storeYields is how many times in a row the writer lets the publishers
// that are ready to run queue their messages before it starts a
// transaction without them. A transaction costs about as much as
// storing a few dozen messages: taking only what was queued when the last
// one ended made batches of 4-5 from 64 publishers. No timer: a message
// waits at most for the goroutines ready to run now (each yield lets them
// run, up to a time slice each when they are busy), never for one to
// come.
const storeYields = 3

func newStoreWriter(st Store, timeout time.Duration, log *slog.Logger, hooks *Hooks) *storeWriter {
	w := &storeWriter{st: st, timeout: timeout, log: log, hooks: hooks, reqs: make(chan *storeReq, maxStoreBatch),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *storeWriter) run() {
	defer close(w.done)
	var next *storeReq // taken from the queue, but for the batch after
	for {
		first := next
		next = nil
		if first == nil {
			select {
			case first = <-w.reqs:
			case <-w.stop:
				return
			}
		}
		reqs := []*storeReq{first}
		n := len(first.entries)
	drain:
		for idle := 0; n < maxStoreBatch && idle < storeYields; {
			select {
			case r := <-w.reqs:
				if n+len(r.entries) > maxStoreBatch {
					next = r
					break drain
				}
				reqs = append(reqs, r)
				n += len(r.entries)
				idle = 0
			default:
				runtime.Gosched()
				idle++
			}
		}
		batch := &Batch{Entries: make([]*StoreEntry, 0, n)}
		for _, r := range reqs {
			batch.Entries = append(batch.Entries, r.entries...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		err := w.st.Append(ctx, batch)
		cancel()
		if err != nil {
			w.log.Error("gilmsg: storing published messages", slog.Int("messages", n), slog.Any("error", err))
		} else {
			// The store's lag: how long the oldest of the batch waited.
			w.hooks.ReportStoreLag(time.Since(first.queued))
		}
		for _, r := range reqs {
			r.err <- err
		}
		if next != nil {
			select {
			case <-w.stop:
				next.err <- ErrClosed
				return
			default:
			}
		}
	}
}

// add stores es in one transaction, in their order, and returns once they
// are stored (or failed). A caller gives at most maxStoreBatch at once.
func (w *storeWriter) add(ctx context.Context, busClosed <-chan struct{}, es ...*StoreEntry) error {
	r := &storeReq{entries: es, err: make(chan error, 1), queued: time.Now()}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-busClosed:
		return ErrClosed
	}
	// Once queued, the message is stored or not whatever ctx does; a
	// caller whose ctx ends is told that it may be (a stored message
	// nobody sent reaches subscribers through replay, as a gap they fill).
	// A writer stopped by Close answers no more.
	var err error
	select {
	case err = <-r.err:
	case <-ctx.Done():
		return &StoreError{MsgID: es[0].MsgID, Err: fmt.Errorf("%w while the store was writing it (it may be stored, and then replayed, but was not sent)", ctx.Err())}
	case <-w.done:
		select {
		case err = <-r.err:
		default:
			err = ErrClosed
		}
	}
	if err != nil {
		return &StoreError{MsgID: es[0].MsgID, Err: err}
	}
	return nil
}

// close stops the writer once what is queued is stored.
func (w *storeWriter) close() {
	close(w.stop)
	<-w.done
	for {
		select {
		case r := <-w.reqs:
			r.err <- ErrClosed
		default:
			return
		}
	}
}

// prepareStored is prepare's end for a bus with a store: the seq_id comes
// from the store, then the message is signed and encoded, then stored.
func (b *Bus) prepareStored(ctx context.Context, fields map[string]any, sign bool) (*outgoing, error) {
	e, err := b.storeEntry(fields, sign)
	if err != nil {
		return nil, err
	}
	return b.storeOne(ctx, e)
}

// storeOne stores e, a message waiting for its seq_id, and returns it
// ready to be sent.
func (b *Bus) storeOne(ctx context.Context, e *StoreEntry) (*outgoing, error) {
	if err := b.storeW.add(ctx, b.closed, e); err != nil {
		return nil, err
	}
	return e.outgoing(), nil
}

// splicedEntry is the store's entry for body, an unsigned envelope that
// appendPlainEnvelope wrote without seq_id: Encode splices the seq_id in
// at seqAt. body is never changed, so that a store may seal an entry
// again (sqlstore does when it retries on a fresh connection).
func splicedEntry(topic, msgID string, timestamp int64, body []byte, seqAt int) *StoreEntry {
	return &StoreEntry{MsgID: msgID, Topic: topic, Timestamp: timestamp, spliced: true,
		Encode: func(seqID int64) ([]byte, error) { return spliceSeqID(body, seqAt, seqID), nil }}
}

// storeEntry is the store's entry for the envelope fields: the store
// calls its Encode, which signs when sign is set, once it has a seq_id.
func (b *Bus) storeEntry(fields map[string]any, sign bool) (*StoreEntry, error) {
	var s *Signer
	if sign {
		var err error
		if s, err = b.getSigner(); err != nil {
			return nil, err
		}
	}
	topic, _ := fields[fieldTopic].(string)
	msgID, _ := fields[fieldMsgID].(string)
	ts, _ := jsonval.Int64(fields[fieldTimestamp])
	e := &StoreEntry{MsgID: msgID, Topic: topic, Timestamp: ts}
	e.Encode = func(seqID int64) ([]byte, error) {
		f := make(map[string]any, len(fields)+4)
		for k, v := range fields {
			f[k] = v
		}
		f[fieldSeqID] = json.Number(strconv.FormatInt(seqID, 10))
		if s != nil {
			if err := s.Sign(f); err != nil {
				return nil, err
			}
		}
		return MarshalCanonical(f)
	}
	return e, nil
}

// outgoing is e, stored, ready to be sent.
func (e *StoreEntry) outgoing() *outgoing {
	return &outgoing{topic: e.Topic, msgID: e.MsgID, body: e.Body, seqID: e.SeqID}
}
