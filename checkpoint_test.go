package gilmsg

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointFromStatusDirectory: a subscription given a checkpoint
// name keeps its status file in status_directory under that name. The
// file found there is the one read (a corrupt one is the error that names
// it); a name that is a path is refused; without status_directory the bus
// says that nothing will be kept.
func TestCheckpointFromStatusDirectory(t *testing.T) {
	dir := t.TempDir()
	n := newTestNet(t)
	n.mutate = func(c *Config) {
		c.StatusDirectory = dir
		c.ReplayEndpoints = map[string]string{pubCN: "tcp://127.0.0.1:1"}
	}
	n.start(pubCN)
	watcher := n.start("")
	path := filepath.Join(dir, "orders-tail")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := watcher.Subscribe(ctx, "", WithCheckpoint("orders-tail"))
	if err == nil {
		sub.Close()
		t.Fatal("Subscribe with WithCheckpoint over a corrupt status file: no error")
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
	for _, bad := range []string{"../orders", "a/b", "..", "."} {
		if sub, err := watcher.Subscribe(ctx, "", WithCheckpoint(bad)); !errors.Is(err, ErrInvalidOption) {
			if sub != nil {
				sub.Close()
			}
			t.Errorf("WithCheckpoint(%q): %v, want ErrInvalidOption", bad, err)
		}
	}

	rec := &logRecorder{}
	n.mutate = func(c *Config) { c.ReplayEndpoints = map[string]string{pubCN: "tcp://127.0.0.1:1"} }
	plain := n.start("", WithLogger(slog.New(rec)))
	sub, err = plain.Subscribe(ctx, "", WithCheckpoint("orders-tail"))
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if !rec.has("gilmsg: status_directory is not set, so this subscription keeps no checkpoint and will not catch up after a restart") {
		t.Errorf("no warning without status_directory; logged %q", rec.msgs)
	}
}
