package trigger_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"regexp"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/trigger"
)

// A Trigger runs a shell command for the messages that match; the command
// reads the message's canonical JSON on its stdin. A service gives Run
// bus.Tail(ctx, topic) and runs it until SIGINT (signal.NotifyContext);
// here the messages are a fixed list, and Run returns once they have run.
func ExampleTrigger() {
	var msgs []*gilmsg.Message
	for _, topic := range []string{"page.view", "_heartbeat", "page.edit"} {
		body := fmt.Sprintf(`{"i":1,"msg":{"path":"/about"},"msg_id":"2026-%s","timestamp":1700000000,"topic":"org.example.dev.web.%s"}`, topic, topic)
		env, err := gilmsg.ParseEnvelope([]byte(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		msgs = append(msgs, &gilmsg.Message{Envelope: env, Body: []byte(body)})
	}
	list := func(yield func(*gilmsg.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}

	t := &trigger.Trigger{
		Exclude: regexp.MustCompile(`_heartbeat`),
		Action:  trigger.ShellCommand(`grep -o '"topic":"[^"]*"'`, os.Stdout, os.Stderr),
	}
	err := t.Run(context.Background(), iter.Seq2[*gilmsg.Message, error](list))
	fmt.Println("Run:", err)
	// Output:
	// "topic":"org.example.dev.web.page.view"
	// "topic":"org.example.dev.web.page.edit"
	// Run: <nil>
}
