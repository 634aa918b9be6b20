package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// StoreOpener opens the store at a persistent_store URL.
type StoreOpener func(ctx context.Context, url string) (Store, error)

var (
	storeOpenersMu sync.RWMutex
	storeOpeners   = map[string]StoreOpener{}
)

// RegisterStore makes [New] and [OpenStore] open persistent_store URLs of
// scheme with open, the way database/sql drivers register: a store
// package calls it from its init, so that a program picks its stores by
// importing them (import _ "github.com/gilmsg/gilmsg-go/sqlstore" for
// sqlite:// and postgresql://), and the root package carries no database
// driver. A scheme spelled driver+dialect (postgresql+psycopg2) falls back
// to driver. Registering a scheme twice, or a nil opener, panics.
func RegisterStore(scheme string, open StoreOpener) {
	storeOpenersMu.Lock()
	defer storeOpenersMu.Unlock()
	if open == nil {
		panic("gilmsg: RegisterStore of a nil opener for " + scheme)
	}
	if _, dup := storeOpeners[scheme]; dup {
		panic("gilmsg: RegisterStore called twice for " + scheme)
	}
	storeOpeners[scheme] = open
}

// ErrNoStoreDriver means persistent_store names a URL scheme that no
// imported package registered with [RegisterStore].
var ErrNoStoreDriver = errors.New("gilmsg: no store package imported for persistent_store")

// OpenStore opens the store at url with the opener registered for its
// scheme. Without one, the error says which import to add.
func OpenStore(ctx context.Context, url string) (Store, error) {
	scheme, _, ok := strings.Cut(url, "://")
	if !ok {
		return nil, &ConfigError{Key: "persistent_store",
			Err: fmt.Errorf("%q is not a URL; write sqlite:////ABS/PATH or postgresql://user@host/db", url)}
	}
	storeOpenersMu.RLock()
	open := storeOpeners[scheme]
	if open == nil {
		base, _, _ := strings.Cut(scheme, "+")
		open = storeOpeners[base]
	}
	known := make([]string, 0, len(storeOpeners))
	for s := range storeOpeners {
		known = append(known, s)
	}
	storeOpenersMu.RUnlock()
	if open == nil {
		slices.Sort(known)
		hint := `add import _ "github.com/gilmsg/gilmsg-go/sqlstore" to the program (it opens sqlite:// and postgresql://)`
		if len(known) > 0 {
			hint += fmt.Sprintf("; registered: %s", strings.Join(known, ", "))
		}
		return nil, fmt.Errorf("%w: scheme %q: %s", ErrNoStoreDriver, scheme, hint)
	}
	return open(ctx, url)
}

// openConfiguredStore opens cfg's persistent_store for [New] when no
// [WithStore] was given: nil when the key is unset.
func openConfiguredStore(cfg *Config) (Store, error) {
	if cfg.PersistentStore == nil {
		return nil, nil
	}
	url := cfg.StoreURL()
	if url == "" {
		return nil, &ConfigError{Key: "persistent_store",
			Err: fmt.Errorf("want a URL string such as sqlite:////var/lib/fedmsg/store.db, got %T", cfg.PersistentStore)}
	}
	// New takes no ctx: the store bounds its own connection attempt
	// (sqlstore: 10 s when the URL sets no connect_timeout).
	return OpenStore(context.Background(), url)
}
