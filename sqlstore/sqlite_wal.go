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
// SQLite's own default (wal_autocheckpoint), so that the WAL stays about
// as large as it would without walCheckpointer.
const walCheckpointPages = 1000

// walCheckpointer copies the WAL into the database file (a checkpoint)
// on a connection and goroutine of its own. SQLite's automatic checkpoint
// runs inside the COMMIT that crosses 1000 pages: that COMMIT, and every
// publish waiting for it, waited for the pages to be read back, written
// and synced. In the stored bench that was 40 % of the store writer's
// time, while the writer's transactions are what the stored publishes
// queue for.
//
// A checkpoint copies what the WAL held when it began. Under a steady
// stream of commits it could never catch up, and SQLite only starts the
// WAL over once all of it is in the database file: so once one has run,
// the next commit copies what came meanwhile itself, out of its
// transaction, and the WAL starts over at the next. A writer that has
// written walCheckpointPages twice more while a checkpoint still runs
// (a slow disk) waits for it, as it would have waited for SQLite's own:
// the WAL stays under about four times walCheckpointPages.
type walCheckpointer struct {
	db    *sql.DB
	every int64 // bytes written between checkpoints
	page  int64

	mu      sync.Mutex // Appends may run at once (two buses, one store)
	written int64      // bytes committed since the last checkpoint began
	asked   bool       // a checkpoint was asked for, and not caught up after

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
	c.written += n + 2*c.page
	if !c.asked {
		if c.written >= c.every {
			c.asked = true
			c.written = 0
			c.kick <- struct{}{} // never blocks: asked until run has answered
		}
		return
	}
	if c.written < 2*c.every {
		select {
		case <-c.ran:
		default:
			return
		}
	} else {
		select {
		case <-c.ran:
		case <-c.stop:
			return
		case <-ctx.Done():
			return
		}
	}
	c.asked = false
	c.written = 0
	c.checkpoint(ctx) // see walCheckpointer; an error is left to the next one
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
