package gilmsg

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewPersistentStoreWithoutImport: this package's tests import no
// store package, so a configured persistent_store must fail New with the
// import to add, never run without a store.
func TestNewPersistentStoreWithoutImport(t *testing.T) {
	n := newTestNet(t)
	n.mutate = func(c *Config) {
		c.SignMessages = false
		c.PersistentStore = "sqlite:///" + filepath.Join(t.TempDir(), "s.db")
	}
	b, err := New(n.config("pub"))
	if err == nil {
		b.Close()
		t.Fatal("New with persistent_store and no store package imported: no error")
	}
	if !errors.Is(err, ErrNoStoreDriver) || !strings.Contains(err.Error(), `import _ "github.com/gilmsg/gilmsg-go/sqlstore"`) {
		t.Fatalf("error %q: want ErrNoStoreDriver naming the import", err)
	}
	if strings.Count(err.Error(), "gilmsg:") != 1 {
		t.Errorf("error %q: want one gilmsg: prefix", err)
	}
	n.mutate = func(c *Config) { c.SignMessages = false; c.PersistentStore = map[string]any{"kind": "sqlite"} }
	if b, err := New(n.config("pub")); err == nil {
		b.Close()
		t.Fatal("New with a non-URL persistent_store: no error")
	}
}
