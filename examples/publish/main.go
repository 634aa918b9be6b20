// Publish: a service announces events on the bus, fire and forget, as
// fedmsg.publish does, and a listener in the same program prints them.
//
//	go run ./examples/publish
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/examples/internal/localbus"
)

// Build is a payload with struct tags: it is sent as the JSON they
// describe.
type Build struct {
	Package string `json:"package"`
	Version string `json:"version"`
	OK      bool   `json:"ok"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := localbus.New("builder01")
	if err != nil {
		return err
	}
	defer local.Close()

	// builder01 publishes from its own endpoint, signing with its
	// certificate; its topics are org.example.dev.koji.<topic>.
	builder, err := local.Start("builder01", gilmsg.WithModname("koji"))
	if err != nil {
		return err
	}
	fmt.Println("builder01 publishes on", builder.Endpoint())

	// A bus with no name cannot publish; it listens to every endpoint of
	// its configuration, here builder01's.
	listener, err := local.Start("")
	if err != nil {
		return err
	}
	sub, err := listener.Subscribe(ctx, "org.example.dev.koji.")
	if err != nil {
		return err
	}
	defer sub.Close()

	// A PUB socket drops messages for a subscriber whose subscription has
	// not reached it yet; fedmsg sleeps post_init_sleep for that. Here the
	// publisher knows: wait until one subscriber would get the topic.
	if err := builder.WaitSubscribers(ctx, "build.", 1); err != nil {
		return err
	}

	payloads := []struct {
		topic string
		msg   any
	}{
		{"build.start", map[string]any{"package": "bash", "version": "5.2"}},
		{"build.complete", Build{Package: "bash", Version: "5.2", OK: true}},
		{"build.complete", Build{Package: "zsh", Version: "5.9", OK: false}},
	}
	for _, p := range payloads {
		receipt, err := builder.Publish(ctx, p.topic, p.msg)
		if err != nil {
			return err
		}
		fmt.Printf("published %s  msg_id=%s\n", receipt.Topic, receipt.MsgID)
	}

	for range payloads {
		m, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("received  %s  from %s, signed by %s: %v\n", m.Topic, m.Name, m.Signer, m.Msg())
	}
	st := builder.Stats()
	fmt.Printf("builder01 published %d messages; listener received %d\n", st.Published, listener.Stats().Received)
	return nil
}
