package gilmsg_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"regexp"
	"sync/atomic"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// Hooks feed a metrics library (here, two counters) with the bus's events
// as they happen. A hook runs on the bus's own goroutines: it must be
// quick and safe for concurrent use.
func ExampleWithHooks() {
	var in, rejected atomic.Int64
	hooks := &gilmsg.Hooks{
		MessageIn: func(topic string) { in.Add(1) },
		Rejected:  func(r gilmsg.Reason) { rejected.Add(1) },
	}
	cfg, err := gilmsg.LoadConfig()
	if err != nil {
		log.Fatal(err)
	}
	bus, err := gilmsg.New(cfg, gilmsg.WithHooks(hooks))
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	for m, err := range bus.Tail(context.Background(), "") {
		if err == nil {
			log.Printf("%s (%d in, %d rejected so far)", m.Topic, in.Load(), rejected.Load())
		}
	}
}

// A Trigger runs a shell command for the messages that match, as
// fedmsg-trigger does; the command reads the message on its stdin.
func ExampleTrigger() {
	cfg, err := gilmsg.LoadConfig()
	if err != nil {
		log.Fatal(err)
	}
	bus, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	t := &gilmsg.Trigger{
		Exclude: regexp.MustCompile(`_heartbeat`),
		Action:  gilmsg.ShellCommand(`jq -r .msg_id >> /var/tmp/ids`, os.Stdout, os.Stderr),
	}
	if err := t.Run(ctx, bus.Tail(ctx, "org.fedoraproject.prod.bodhi")); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
