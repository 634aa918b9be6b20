package gateway_test

import (
	"context"
	"fmt"
	"log"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/gateway"
)

// A client outside the bus reads it through the gateway with a plain
// ZeroMQ SUB socket: frames come as the bus carried them, fedmsg's topic
// and JSON body, for the client to validate if it needs to. Here the bus
// is one publisher on a free port of 127.0.0.1, unsigned; a real gateway
// loads its configuration with gilmsg.LoadConfig and binds
// tcp://*:9940.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := gilmsg.DefaultConfig()
	cfg.Name, cfg.TopicPrefix, cfg.Environment = "web01", "org.example", "dev"
	cfg.Endpoints = map[string][]string{"web01": {"tcp://127.0.0.1:*"}}
	web, err := gilmsg.New(cfg, gilmsg.WithModname("web"))
	if err != nil {
		log.Fatal(err)
	}
	defer web.Close()

	gcfg := gilmsg.DefaultConfig()
	gcfg.Endpoints = map[string][]string{"web01": {web.Endpoint()}}
	g, err := gateway.New(gcfg, gateway.WithBind("tcp://127.0.0.1:*"))
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	go g.Run(ctx)

	zctx, err := zmq.NewContext()
	if err != nil {
		log.Fatal(err)
	}
	defer zctx.Term()
	client, err := zctx.NewSocket(zmq.SUB)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.SetLinger(0)
	client.SetSubscribe("org.example.dev.web.")
	client.SetRcvtimeo(100 * time.Millisecond)
	if err := client.Connect(g.Endpoint()); err != nil {
		log.Fatal(err)
	}

	// Neither the gateway's PUB socket nor the publisher's can say when a
	// subscription has reached it: publish until the client hears.
	for {
		if _, err := web.Publish(ctx, "page.view", map[string]string{"path": "/"}); err != nil {
			log.Fatal(err)
		}
		frames, err := client.RecvMessageBytes(0)
		if err != nil {
			continue
		}
		env, err := gilmsg.ParseEnvelope(frames[1])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d frames from %d source: %s %s\n", len(frames), g.Sources(), frames[0], env.Topic)
		break
	}
	// Output:
	// 2 frames from 1 source: org.example.dev.web.page.view org.example.dev.web.page.view
}
