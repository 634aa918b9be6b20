package main

import (
	"context"
	"fmt"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// openStore opens the configuration's persistent_store, when it is set:
// the bus options that use it, and what closes it (after the bus).
func openStore(ctx context.Context, cfg *gilmsg.Config) (gilmsg.Store, func(), error) {
	if cfg.PersistentStore == nil {
		return nil, func() {}, nil
	}
	url := cfg.StoreURL()
	if url == "" {
		return nil, nil, &gilmsg.ConfigError{Key: "persistent_store",
			Err: fmt.Errorf("want a URL string such as sqlite:////var/lib/fedmsg/store.db, got %T", cfg.PersistentStore)}
	}
	st, err := sqlstore.Open(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

// storeOptions is openStore as bus options.
func storeOptions(ctx context.Context, cfg *gilmsg.Config) ([]gilmsg.Option, func(), error) {
	st, closeStore, err := openStore(ctx, cfg)
	if err != nil || st == nil {
		return nil, closeStore, err
	}
	return []gilmsg.Option{gilmsg.WithStore(st)}, closeStore, nil
}

// checkpointName is the name a tail keeps its last seq_ids under in
// status_directory: its --name, else gilmsg-tail.
func checkpointName(name string) string {
	if name == "" {
		return "gilmsg-tail"
	}
	return name
}
