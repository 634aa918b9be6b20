package gilmsg

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// statusFile is a consumer's memory across restarts: per publisher name,
// the highest seq_id it delivered, the runs of seq_ids below it that it
// did not deliver (missing, or not yet handled), and when each run was
// first noticed. It is written whole, to a temporary file renamed over the
// old one, at each change, so that a crash leaves the old or the new
// content, never half of one, and a killed process repeats at most the
// message it was handling. The lock is for Message.Ack and Message.Done,
// which may run on any goroutine.
type statusFile struct {
	mu     sync.Mutex
	path   string
	names  map[string]*checkpoint
	dirty  bool
	failed bool // the last write failed: said once until one works
}

// checkpoint is one name's entry.
type checkpoint struct {
	top   int64
	ts    int64
	epoch uint32 // the recovery's run of seq_ids it counts in
	holes []ckHole
}

type ckHole struct {
	from, to int64
	since    time.Time
}

// On disk. Version 1 had no holes; it reads as version 2 without any.
type statusDoc struct {
	Version int                    `json:"version"`
	Names   map[string]statusEntry `json:"names"`
}

type statusEntry struct {
	SeqID     int64      `json:"seq_id"`
	Timestamp int64      `json:"timestamp"`
	Holes     [][3]int64 `json:"holes,omitempty"` // [first, last, Unix time first noticed]
}

func loadStatus(path string) (*statusFile, error) {
	st := &statusFile{path: path, names: map[string]*checkpoint{}}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gilmsg: status file: %w", err)
	}
	var doc statusDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("gilmsg: status file %s is corrupt (remove it to start from live traffic): %w", path, err)
	}
	for name, e := range doc.Names {
		c, err := e.checkpoint()
		if err != nil {
			return nil, fmt.Errorf("gilmsg: status file %s is corrupt (remove it to start from live traffic): name %q: %w", path, name, err)
		}
		st.names[name] = c
	}
	return st, nil
}

// checkpoint checks what a file says: a hand-edited or foreign file must
// not send the subscription after 2^63 seq_ids.
func (e statusEntry) checkpoint() (*checkpoint, error) {
	if e.SeqID < 0 || e.SeqID > maxSeqID {
		return nil, fmt.Errorf("seq_id %d is out of range (0 to 2^62)", e.SeqID)
	}
	if len(e.Holes) > maxHoles {
		return nil, fmt.Errorf("%d runs of missing seq_ids (at most %d)", len(e.Holes), maxHoles)
	}
	c := &checkpoint{top: e.SeqID, ts: e.Timestamp}
	prev := int64(0)
	for _, h := range e.Holes {
		if h[0] <= prev || h[1] < h[0] || h[1] >= e.SeqID {
			return nil, fmt.Errorf("missing seq_ids %d..%d: not in order below seq_id %d", h[0], h[1], e.SeqID)
		}
		prev = h[1]
		c.holes = append(c.holes, ckHole{from: h[0], to: h[1], since: time.Unix(h[2], 0)})
	}
	return c, nil
}

// begin starts name's entry at top (everything up to it counts as
// handled), for a name seen for the first time or a new run of its
// seq_ids; an entry of that run is kept.
func (st *statusFile) begin(name string, epoch uint32, top int64) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c := st.names[name]; c != nil && c.epoch >= epoch {
		return
	}
	st.names[name] = &checkpoint{top: top, epoch: epoch}
	st.dirty = true
}

// handled records seq as delivered and writes the file.
func (st *statusFile) handled(name string, epoch uint32, seq, ts int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.names[name]
	if c == nil || c.epoch < epoch {
		c = &checkpoint{top: seq - 1, epoch: epoch}
		st.names[name] = c
	}
	if c.epoch > epoch {
		return nil // of a run given up
	}
	if seq > c.top {
		c.ts = ts
	}
	c.mark(seq, seq)
	st.dirty = true
	return st.write()
}

// done records from..to as handled without a delivery (skipped, given
// up); the file is written with the next delivery or on close.
func (st *statusFile) done(name string, epoch uint32, from, to int64) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c := st.names[name]; c != nil && c.epoch == epoch {
		c.mark(from, to)
		st.dirty = true
	}
}

// mark makes from..to handled: cut out of the holes and, above top,
// top raised to it; what lies between the old top and from becomes a hole
// (in flight or missing: not handled yet).
func (c *checkpoint) mark(from, to int64) {
	c.holes = cut(c.holes, from, min(to, c.top))
	if to <= c.top {
		return
	}
	if from > c.top+1 {
		c.holes = append(c.holes, ckHole{from: c.top + 1, to: from - 1, since: time.Now()})
		c.bound()
	}
	c.top = to
}

// bound merges the two closest holes while there are too many: what lies
// between them is delivered again after a restart (a repeat, never a
// loss).
func (c *checkpoint) bound() {
	for len(c.holes) > maxHoles {
		best := 1
		for i := 2; i < len(c.holes); i++ {
			if c.holes[i].from-c.holes[i-1].to < c.holes[best].from-c.holes[best-1].to {
				best = i
			}
		}
		c.holes[best-1].to = c.holes[best].to
		c.holes = slices.Delete(c.holes, best, best+1)
	}
}

// cut removes from..to from sorted, disjoint holes.
func cut(holes []ckHole, from, to int64) []ckHole {
	if from > to {
		return holes
	}
	out := holes[:0:0]
	for _, h := range holes {
		if h.to < from || h.from > to {
			out = append(out, h)
			continue
		}
		if h.from < from {
			out = append(out, ckHole{from: h.from, to: from - 1, since: h.since})
		}
		if h.to > to {
			out = append(out, ckHole{from: to + 1, to: h.to, since: h.since})
		}
	}
	return out
}

func (st *statusFile) flush() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.write()
}

// write writes the file if it changed; st.mu is held.
func (st *statusFile) write() error {
	if !st.dirty {
		return nil
	}
	doc := statusDoc{Version: 2, Names: make(map[string]statusEntry, len(st.names))}
	for name, c := range st.names {
		e := statusEntry{SeqID: c.top, Timestamp: c.ts}
		for _, h := range c.holes {
			e.Holes = append(e.Holes, [3]int64{h.from, h.to, h.since.Unix()})
		}
		doc.Names[name] = e
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(st.path), "."+filepath.Base(st.path)+".*")
	if err != nil {
		return fmt.Errorf("gilmsg: status file: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), st.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("gilmsg: status file %s: %w", st.path, err)
	}
	st.dirty = false
	st.failed = false
	return nil
}

// logOnce logs a failed write once until a write works again.
func (st *statusFile) logOnce(log *slog.Logger, err error) {
	st.mu.Lock()
	said := st.failed
	st.failed = true
	st.mu.Unlock()
	if !said {
		log.Error("gilmsg: status file", slog.Any("error", err))
	}
}

// hubStatusFile is RunConsumers' default status file, from
// status_directory.
func (b *Bus) hubStatusFile() []SubscribeOption {
	if b.cfg.StatusDirectory == "" {
		return nil
	}
	name := b.cfg.Name
	if name == "" {
		name = "gilmsg-hub"
	}
	return []SubscribeOption{StatusFile(filepath.Join(b.cfg.StatusDirectory, name))}
}
