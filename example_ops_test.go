package gilmsg_test

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// Hooks feed a metrics library (here, two counters) with the bus's events
// as they happen. A hook runs on the bus's own goroutines: it must be
// quick and safe for concurrent use.
func ExampleWithHooks() {
	pki, cleanup := newPKI("web01")
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var in, rejected atomic.Int64
	hooks := &gilmsg.Hooks{
		MessageIn: func(topic string) { in.Add(1) },
		Rejected:  func(r gilmsg.Reason) { rejected.Add(1) },
	}
	pub := start(pki, "web01", nil, gilmsg.WithModname("web"))
	defer pub.Close()
	sub := start(pki, "", []*gilmsg.Bus{pub}, gilmsg.WithHooks(hooks))
	defer sub.Close()

	go func() {
		if err := pub.WaitSubscribers(ctx, "page.view", 1); err != nil {
			return
		}
		for _, page := range []string{"/", "/about"} {
			if _, err := pub.Publish(ctx, "page.view", map[string]any{"path": page}); err != nil {
				return
			}
		}
	}()
	n := 0
	for m, err := range sub.Tail(ctx, sub.FullTopic("web", "")) {
		if err != nil {
			log.Fatal(err)
		}
		// MessageIn runs before the message is yielded.
		fmt.Printf("%s (%d in, %d rejected so far)\n", m.Topic, in.Load(), rejected.Load())
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// org.example.dev.web.page.view (1 in, 0 rejected so far)
	// org.example.dev.web.page.view (2 in, 0 rejected so far)
}
