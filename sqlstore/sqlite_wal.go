package sqlstore

import (
	"context"
	"database/sql"
	"sync"

	"github.com/mattn/go-sqlite3"
)

// sqliteDriver is mattn's driver with SQLite's automatic checkpoint off on
// every connection: walCheckpointer does it instead. The DSN's parameters
// are read as by the "sqlite3" driver.
const sqliteDriver = "sqlite3-gilmsg"

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint=0", nil)
		return err
	}})
}

// walCheckpointPages is how much a store writes between two checkpoints:
// SQLite's own default (wal_autocheckpoint).
const walCheckpointPages = 1000

// How far the WAL grows (in walCheckpointPages) before the writer copies
// the rest of it itself (walSoftCheckpoints, once what is left is under
// 1/walChasePart of walCheckpointPages), or waits for the checkpoint
// running to do so (walHardCheckpoints): see walCheckpointer.
const (
	walSoftCheckpoints = 3
	walHardCheckpoints = 4
	walChasePart       = 16
)

// walCheckpointer copies the WAL into the database file (a checkpoint)
// on a connection and goroutine of its own. SQLite's automatic checkpoint
// runs inside the COMMIT that crosses 1000 pages: that COMMIT, and every
// publish waiting for it, waited for the pages to be read back, written
// and synced. In the stored bench that was 40 % of the store writer's
// time, while the writer's transactions are what the stored publishes
// queue for.
//
// A checkpoint copies what the WAL held when it began, and SQLite starts
// the WAL over only once all of it is in the database file: under a
// steady stream of commits, checkpoints beside the writer never get
// there. So the writer has what came during a checkpoint copied by
// another, which has less to copy, and so on; once the WAL holds
// walSoftCheckpoints × walCheckpointPages, it copies what is left itself,
// out of its transaction, when that is little, and the WAL starts over
// at its next transaction. That copy makes its publishes wait for two
// fsyncs (1.6 to 83 ms, measured on a loaded VM), hence only once per
// few checkpoints. Past walHardCheckpoints (a disk slower than the
// writer), it waits for the checkpoint running and copies the rest,
// however much, as it would have waited for SQLite's own: the WAL stays
// within about walHardCheckpoints × walCheckpointPages (and a batch).
type walCheckpointer struct {
	db    *sql.DB
	every int64 // bytes written between checkpoints
	page  int64

	mu         sync.Mutex // Appends may run at once (two buses, one store)
	written    int64      // bytes committed since the last checkpoint began
	sinceStart int64      // bytes committed since the WAL last started over
	asked      bool       // a checkpoint was asked for, and has not been followed up

	kick     chan struct{} // to run: a checkpoint is asked for
	ran      chan struct{} // from run: the checkpoint asked for has run
	stop     chan struct{}
	stopOnce sync.Once
	exited   chan struct{}
}

// newWALCheckpointer starts the checkpointer of db, whose pages are
// pageSize bytes.
func newWALCheckpointer(db *sql.DB, pageSize int64) *walCheckpointer {
	c := &walCheckpointer{db: db, every: walCheckpointPages * pageSize, page: pageSize,
		kick: make(chan struct{}, 1), ran: make(chan struct{}, 1), stop: make(chan struct{}), exited: make(chan struct{})}
	go c.run()
	return c
}

func (c *walCheckpointer) run() {
	defer close(c.exited)
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			return
		}
		// An error (SQLITE_BUSY: another process checkpoints) is left to
		// the next checkpoint; the commits it would have copied are safe
		// in the WAL meanwhile.
		c.checkpoint(context.Background())
		c.ran <- struct{}{} // never blocks: one kick at a time
	}
}

// checkpoint copies what it can of the WAL without waiting for readers or
// writers (SQLite's PASSIVE mode, that of its automatic checkpoint).
func (c *walCheckpointer) checkpoint(ctx context.Context) error {
	var busy, logFrames, copied int64
	return c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
}

// committed is told by Append, out of its transaction, that it committed
// rows holding n bytes.
func (c *walCheckpointer) committed(ctx context.Context, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A commit rewrites the page the last one left half full, and the
	// page above it.
	n += 2 * c.page
	c.written += n
	c.sinceStart += n
	if !c.asked {
		if c.written >= c.every {
			c.ask()
		}
		return
	}
	select {
	case <-c.ran:
	default:
		if c.sinceStart < walHardCheckpoints*c.every {
			return
		}
		select { // a disk slower than the writer: the WAL is at its bound
		case <-c.ran:
		case <-c.stop:
			return
		case <-ctx.Done():
			return
		}
	}
	c.asked = false
	if c.sinceStart < walHardCheckpoints*c.every && (c.sinceStart < walSoftCheckpoints*c.every || c.written >= c.every/walChasePart) {
		// What came while it ran goes in the background too: less comes
		// during each, and less is left for the writer to copy.
		if c.written >= c.every/walChasePart {
			c.ask()
		}
		return
	}
	c.checkpoint(ctx) // see walCheckpointer; an error is left to the next one
	c.written, c.sinceStart = 0, 0
}

// ask has the goroutine checkpoint; the caller holds mu.
func (c *walCheckpointer) ask() {
	c.asked = true
	c.written = 0
	c.kick <- struct{}{} // never blocks: asked until run has answered
}

// close stops the checkpointer; closing the database checkpoints what is
// left.
func (c *walCheckpointer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.exited
}

// rowBytes is about what storing e takes in the WAL: its columns and a
// row's overhead.
func rowBytes(body []byte, msgID, topic string) int64 {
	return int64(len(body) + len(msgID) + len(topic) + 26 + 16)
}
