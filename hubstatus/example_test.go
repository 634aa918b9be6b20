package hubstatus_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/hubstatus"
)

// A hub (RunConsumers) publishes its status on the config's
// moksha.monitoring.socket, every 5 seconds by default (here every 0.1);
// Read takes the first one that reaches it, as fedmsg-check does.
func ExampleRead() {
	dir, err := os.MkdirTemp("", "hubstatus-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	endpoint := "ipc://" + filepath.Join(dir, "monitor")

	cfg := gilmsg.DefaultConfig()
	cfg.ValidateSignatures = false
	cfg.Extra = map[string]any{hubstatus.SocketKey: endpoint}
	hub, err := gilmsg.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() {
		audit := gilmsg.ConsumerFunc("org.example.dev.web", func(context.Context, *gilmsg.Message) error { return nil })
		ran <- hub.RunConsumers(runCtx, []gilmsg.Consumer{audit}, gilmsg.WithStatusInterval(100*time.Millisecond))
	}()

	st, _, err := hubstatus.Read(ctx, endpoint)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range st.Consumers {
		fmt.Println("consumer", c.Name, c.Topic, "initialized:", c.Initialized)
	}
	for _, p := range st.Producers {
		fmt.Println("producer", p.Name, "every", p.Frequency, "s")
	}
	stop()
	fmt.Println("RunConsumers:", <-ran)
	// Output:
	// consumer ConsumerFunc [org.example.dev.web] initialized: true
	// producer MonitoringProducer every 0.1 s
	// RunConsumers: <nil>
}
