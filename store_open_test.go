package gilmsg

import (
	"errors"
	"os/exec"
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

// TestRootHasNoHeavyDeps: the package a fedmsg service imports links no
// database driver, broker client or metrics library; those live in
// sqlstore, amqpbridge and cmd/gilmsg.
func TestRootHasNoHeavyDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, heavy := range []string{"jackc/pgx", "mattn/go-sqlite3", "amqp091", "prometheus", "spf13/cobra"} {
			if strings.Contains(dep, heavy) {
				t.Errorf("the root package depends on %s", dep)
			}
		}
	}
}
