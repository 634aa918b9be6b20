package gilmsg

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigTypoNamesFileAndKey: a misspelt key in a file is reported,
// without WithLogger, on slog.Default, with its file and the key it
// probably meant; the loader's Warn says the same.
func TestConfigTypoNamesFileAndKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "site.json")
	if err := os.WriteFile(file, []byte(`{"persistant_store": "sqlite:////tmp/x.db", "status_directroy": "/tmp", "zzz_custom": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var warned []string
	cfg, err := (&ConfigLoader{Files: []string{file}, Warn: func(e *ConfigError) { warned = append(warned, e.Error()) }}).Load()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(warned, "\n")
	for _, want := range []string{`did you mean "persistent_store"?`, `did you mean "status_directory"?`, file} {
		if !strings.Contains(joined, want) {
			t.Errorf("loader warnings %q lack %q", joined, want)
		}
	}
	if strings.Contains(joined, "zzz_custom\": not a key of fedmsg or gilmsg, ignored (kept in Extra); did") {
		t.Errorf("a guess for a key close to nothing: %q", joined)
	}

	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	cfg.SignMessages = false
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	out := buf.String()
	for _, want := range []string{"key=persistant_store", "did_you_mean=persistent_store", "file=" + file, "did_you_mean=status_directory"} {
		if !strings.Contains(out, want) {
			t.Errorf("slog.Default got %q, lacking %q", out, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "abc", 0}, {"ack_timout", "ack_timeout", 1}, {"directroy", "directory", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
