package gilmsg

import (
	"bytes"
	"encoding/json"
	"errors"
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
// first noticed.
//
// Each change is appended to a journal (<path>.journal, one JSON line,
// one write: microseconds), so that a killed process repeats at most the
// message it was handling; at most once a second, and on close, the whole
// state is written to a temporary file renamed over <path> (a crash leaves
// the old or the new content, never half of one; on ext4 a rename over a
// file costs about as much as an fsync) and the journal starts again. A
// journal line names the generation of <path> it follows, so lines left
// by a crash between the rename and the journal's truncation are not
// applied twice; a torn last line is ignored.
//
// The lock is for Message.Ack and Message.Done, which may run on any
// goroutine.
type statusFile struct {
	mu      sync.Mutex
	path    string
	names   map[string]*checkpoint
	gen     int64    // generation of the file, which journal lines name
	journal *os.File // opened at the first change
	dirty   bool     // changed since the file was last written
	written time.Time
	failed  bool // the last write failed: said once until one works
}

// rewriteEvery bounds how often the whole file is rewritten while
// messages flow; the journal holds what came since.
const rewriteEvery = time.Second

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
	Journal int64                  `json:"journal,omitempty"` // the generation journal lines follow
	Names   map[string]statusEntry `json:"names"`
}

// journalLine is one change: B begins a name's entry at a top, H marks a
// seq_id handled (with its timestamp), D marks a run handled.
type journalLine struct {
	Gen  int64   `json:"g"`
	Name string  `json:"n"`
	B    *int64  `json:"b,omitempty"`
	H    []int64 `json:"h,omitempty"`
	D    []int64 `json:"d,omitempty"`
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
		return nil, fmt.Errorf("status file: %w", err)
	}
	var doc statusDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("status file %s is corrupt (remove it to start from live traffic): %w", path, err)
	}
	for name, e := range doc.Names {
		c, err := e.checkpoint()
		if err != nil {
			return nil, fmt.Errorf("status file %s is corrupt (remove it to start from live traffic): name %q: %w", path, name, err)
		}
		st.names[name] = c
	}
	st.gen = doc.Journal
	if err := st.replayJournal(); err != nil {
		return nil, err
	}
	return st, nil
}

// replayJournal applies the journal's lines of this generation.
func (st *statusFile) replayJournal() error {
	jpath := st.path + ".journal"
	data, err := os.ReadFile(jpath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status file: %w", err)
	}
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break // torn by a crash: that change was not made
		}
		line := data[:i]
		data = data[i+1:]
		var l journalLine
		err := json.Unmarshal(line, &l)
		if err == nil {
			err = st.apply(l)
		}
		if err != nil {
			return fmt.Errorf("status file journal %s is corrupt (remove it and %s to start from live traffic): line %d: %w", jpath, st.path, n, err)
		}
	}
	st.dirty = true // the next write folds the journal into the file
	return nil
}

func (st *statusFile) apply(l journalLine) error {
	if l.Gen != st.gen {
		return nil // written before the file it follows was rewritten
	}
	inRange := func(v ...int64) bool {
		for _, x := range v {
			if x < 0 || x > maxSeqID {
				return false
			}
		}
		return true
	}
	c := st.names[l.Name]
	switch {
	case l.B != nil && inRange(*l.B):
		st.names[l.Name] = &checkpoint{top: *l.B}
	case len(l.H) == 2 && inRange(l.H[0]) && c != nil:
		if l.H[0] > c.top {
			c.ts = l.H[1]
		}
		c.mark(l.H[0], l.H[0])
	case len(l.D) == 2 && inRange(l.D...) && l.D[0] <= l.D[1] && c != nil:
		c.mark(l.D[0], l.D[1])
	case c == nil && l.B == nil:
		return fmt.Errorf("name %q has no entry", l.Name)
	default:
		return errors.New("not a change this package writes")
	}
	return nil
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
	st.log(journalLine{Name: name, B: &top})
}

// handled records seq as delivered and writes the file.
func (st *statusFile) handled(name string, epoch uint32, seq, ts int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.names[name]
	if c == nil || c.epoch < epoch {
		top := seq - 1
		c = &checkpoint{top: top, epoch: epoch}
		st.names[name] = c
		st.log(journalLine{Name: name, B: &top})
	}
	if c.epoch > epoch {
		return nil // of a run given up
	}
	if seq > c.top {
		c.ts = ts
	}
	c.mark(seq, seq)
	return st.log(journalLine{Name: name, H: []int64{seq, ts}})
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
		st.log(journalLine{Name: name, D: []int64{from, to}})
	}
}

// log appends one change to the journal, or rewrites the whole file when
// the last rewrite is a second old; st.mu is held.
func (st *statusFile) log(l journalLine) error {
	st.dirty = true
	if time.Since(st.written) >= rewriteEvery {
		return st.write()
	}
	if st.journal == nil {
		f, err := os.OpenFile(st.path+".journal", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("status file: %w", err)
		}
		st.journal = f
	}
	l.Gen = st.gen
	line, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if _, err := st.journal.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("status file journal: %w", err)
	}
	return nil
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

// flush writes the whole file and closes the journal, for Close.
func (st *statusFile) flush() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.write()
	if st.journal != nil {
		st.journal.Close()
		st.journal = nil
	}
	return err
}

// write writes the file if it changed; st.mu is held.
func (st *statusFile) write() error {
	if !st.dirty {
		return nil
	}
	doc := statusDoc{Version: 2, Journal: st.gen + 1, Names: make(map[string]statusEntry, len(st.names))}
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
		return fmt.Errorf("status file: %w", err)
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
		return fmt.Errorf("status file %s: %w", st.path, err)
	}
	// The journal's lines are in the file now, and name the generation
	// before it: emptied, or ignored if a crash comes first.
	st.gen++
	if st.journal != nil {
		st.journal.Truncate(0)
	} else {
		os.Remove(st.path + ".journal")
	}
	st.dirty = false
	st.failed = false
	st.written = time.Now()
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
	return []SubscribeOption{WithStatusFile(filepath.Join(b.cfg.StatusDirectory, name))}
}
