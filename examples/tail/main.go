// Tail: read the bus as fedmsg.tail_messages does, with a range loop,
// and see what validation does with messages that are not properly
// signed.
//
//	go run ./examples/tail
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/examples/internal/localbus"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tail:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := localbus.New("web01")
	if err != nil {
		return err
	}
	defer local.Close()

	// Three publishers: web01 signs with a certificate from the bus's CA;
	// mallory01 has a certificate with the right shape from a CA nobody
	// trusts; legacy01 does not sign at all.
	if err := local.PKI.IssueRogue("mallory01"); err != nil {
		return err
	}
	var pubs []*gilmsg.Bus
	for _, name := range []string{"web01", "mallory01", "legacy01"} {
		cfg := local.Config(name)
		cfg.SignMessages = name != "legacy01"
		bus, err := local.Join(cfg, gilmsg.WithModname("web"))
		if err != nil {
			return err
		}
		pubs = append(pubs, bus)
	}
	// A bus with no name only subscribes; it listens to every endpoint
	// started before it.
	tailer, err := local.Start("")
	if err != nil {
		return err
	}

	// Tail subscribes when the loop starts, so the publishers run in a
	// goroutine; each waits until the subscription has reached it.
	go func() {
		for i, p := range pubs {
			if err := p.WaitSubscribers(ctx, "page.view", 1); err != nil {
				return
			}
			p.Publish(ctx, "page.view", map[string]any{"path": fmt.Sprintf("/page/%d", i)})
		}
		pubs[0].Publish(ctx, "page.view", map[string]any{"path": "/last"})
	}()

	// By default invalid messages are skipped silently (and counted);
	// WithInvalidMessages yields them with the reason, to show it here.
	n := 0
	for m, err := range tailer.Tail(ctx, tailer.FullTopic("web", ""), gilmsg.WithInvalidMessages()) {
		n++
		if err != nil {
			fmt.Printf("rejected  from %s: %s (%v)\n", m.Name, gilmsg.ReasonOf(err), err)
		} else {
			fmt.Printf("accepted  from %s: %s %v signed by %s\n", m.Name, m.Topic, m.Msg(), m.Signer)
		}
		if n == 4 {
			break // ends the loop and closes the subscription
		}
	}
	if n < 4 {
		// Tail ends quietly when ctx does.
		return fmt.Errorf("only %d messages before %v", n, ctx.Err())
	}
	fmt.Println("invalid messages by reason:", tailer.Stats().Invalid)
	return nil
}
