package sqlstore_test

import (
	"context"
	"errors"
	"log"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/replayserver"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// A publisher that stores what it sends, its replay server, and a
// consumer that recovers gaps and catches up after restarts.
//
// It has no output, so go test compiles it without running it: it uses
// the machine's fedmsg configuration and store, and tails forever. The
// package's tests run the same steps on throwaway stores.
func ExampleOpen() {
	ctx := context.Background()
	cfg, err := gilmsg.LoadConfig() // persistent_store, replay_endpoints, status_directory, ...
	if err != nil {
		log.Fatal(err)
	}
	st, err := sqlstore.Open(ctx, cfg.StoreURL()) // "sqlite:////var/lib/fedmsg/store.db"
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	// Publishing: each message gets its seq_id from st and is stored
	// before it is sent.
	bus, err := gilmsg.New(cfg, gilmsg.WithStore(st))
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	if _, err := bus.Publish(ctx, "update", map[string]any{"id": 42}); err != nil {
		log.Fatal(err)
	}

	// Serving replay_endpoints[cfg.Name] from the same store.
	srv, err := replayserver.New(cfg, cfg.Name, st, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(ctx)

	// Consuming, on another host: gaps are filled from the publisher's
	// replay server, and a restart resumes where the status file says.
	for m, err := range bus.Tail(ctx, "", gilmsg.WithStatusFile("/var/lib/myconsumer/status")) {
		var gap *gilmsg.GapError
		if errors.As(err, &gap) {
			log.Printf("lost %d..%d of %s: %v", gap.From, gap.To, gap.Name, gap.Err)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		log.Println(m.Topic, m.Msg())
	}
}
