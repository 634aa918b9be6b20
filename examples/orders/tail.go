// orders tail prints the id of every order examples/orders publishes, one a
// line, and misses none across restarts: its subscription has a
// checkpoint name, so its status file lives in the configuration's
// status_directory, and when it starts it asks the publishers'
// replay_endpoints for every order after the last one it printed. All of
// that comes from the configuration; the program names only its
// checkpoint.
//
// A killed tail prints at most the order it was handling again: an order
// is marked done only after its line is written.
//
//	go run ./examples/orders tail -config /etc/orders.d

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

func runTail(args []string) error {
	flags := flag.NewFlagSet("orders tail", flag.ExitOnError)
	config := flags.String("config", "", "a fedmsg config file or directory, read after the usual ones")
	checkpoint := flags.String("checkpoint", "ordertail", "the checkpoint's name: its file in status_directory")
	flags.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	if cfg.StatusDirectory == "" {
		return fmt.Errorf("status_directory is not set: without it the tail would not catch up after a restart")
	}
	// No name: this bus only listens, to every endpoint of the config.
	cfg.Name = ""
	bus, err := gilmsg.New(cfg)
	if err != nil {
		return err
	}
	defer bus.Close()

	for m, err := range bus.Tail(ctx, bus.FullTopic("orders", "order."),
		gilmsg.WithCheckpoint(*checkpoint), gilmsg.WithManualAck()) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "orders tail:", err)
			continue
		}
		var order struct {
			ID string `json:"id"`
		}
		if err := m.Decode(&order); err != nil {
			fmt.Fprintf(os.Stderr, "orders tail: %s: %v\n", m.Topic, err)
		} else {
			fmt.Printf("order %s\n", order.ID)
		}
		m.Done()
	}
	return nil
}
