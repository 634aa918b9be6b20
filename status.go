package gilmsg

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// statusFile is a consumer's memory across restarts: the last seq_id (and
// its timestamp) it yielded from each publisher name. It is written whole,
// to a temporary file renamed over the old one, so that a crash leaves the
// old or the new content, never half of one.
type statusFile struct {
	path    string
	names   map[string]statusEntry
	dirty   bool
	written time.Time
}

type statusEntry struct {
	SeqID     int64 `json:"seq_id"`
	Timestamp int64 `json:"timestamp"`
}

type statusDoc struct {
	Version int                    `json:"version"`
	Names   map[string]statusEntry `json:"names"`
}

// statusEvery bounds how often the file is written while messages flow: a
// crash between two writes yields the last second's messages again on
// restart (at least once), a clean close none.
const statusEvery = time.Second

func loadStatus(path string) (*statusFile, error) {
	st := &statusFile{path: path, names: map[string]statusEntry{}}
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
	if doc.Names != nil {
		st.names = doc.Names
	}
	return st, nil
}

func (st *statusFile) note(name string, seq, ts int64) error {
	if seq <= st.names[name].SeqID {
		return nil
	}
	st.names[name] = statusEntry{SeqID: seq, Timestamp: ts}
	st.dirty = true
	if time.Since(st.written) >= statusEvery {
		return st.flush()
	}
	return nil
}

func (st *statusFile) flush() error {
	if !st.dirty {
		return nil
	}
	data, err := json.MarshalIndent(statusDoc{Version: 1, Names: st.names}, "", "  ")
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
	st.written = time.Now()
	return nil
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
