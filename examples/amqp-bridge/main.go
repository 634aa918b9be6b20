// AMQP bridge: a bus and a RabbitMQ broker joined both ways, as during a
// move from fedmsg to fedora-messaging. A reliable publish with the bridge
// as recipient returns once the broker has the message; a message
// published on the broker reaches the bus signed by the bridge; nothing
// comes back round.
//
//	go run ./examples/amqp-bridge [AMQP-URL]
//
// The URL defaults to $AMQP_URL, else amqp://guest:guest@localhost:5672/.
// The example declares exchanges and a queue of its own and deletes them
// when it ends.
package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/amqpbridge"
	"github.com/gilmsg/gilmsg-go/examples/internal/localbus"
)

func main() {
	url := os.Getenv("AMQP_URL")
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if url == "" {
		url = amqpbridge.DefaultURL
	}
	if err := run(url); err != nil {
		fmt.Fprintln(os.Stderr, "amqp-bridge:", err)
		os.Exit(1)
	}
}

func run(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The broker side: what a fedora-messaging consumer and publisher
	// would use, under names of the example's own.
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("this example needs a RabbitMQ broker (give its URL): %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	bc := amqpbridge.DefaultConfig("bridge01")
	bc.URL = url
	bc.PublishExchange = "example.zmq.topic." + suffix    // zmq-to-amqp publishes here
	bc.ConsumeExchange = "example.amq.topic." + suffix    // amqp-to-zmq consumes from here
	bc.Queue = "example.gilmsg-bridge.bridge01." + suffix // and through this queue
	watch := "example.watch." + suffix
	defer func() {
		ch.QueueDelete(watch, false, false, false)
		ch.QueueDelete(bc.Queue, false, false, false)
		ch.ExchangeDelete(bc.PublishExchange, false, false)
		ch.ExchangeDelete(bc.ConsumeExchange, false, false)
	}()
	for _, x := range []string{bc.PublishExchange, bc.ConsumeExchange} {
		if err := ch.ExchangeDeclare(x, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
	}
	if _, err := ch.QueueDeclare(watch, true, false, false, false, nil); err != nil {
		return err
	}
	if err := ch.QueueBind(watch, "#", bc.PublishExchange, false, nil); err != nil {
		return err
	}

	// The bus side: app01 and the bridge, which must hear each other, so
	// their ports are fixed before either starts, as in a config file.
	local, err := localbus.New("app01", "bridge01")
	if err != nil {
		return err
	}
	defer local.Close()
	endpoints := map[string][]string{"app01": {freeAddr()}, "bridge01": {freeAddr()}}
	start := func(name string) (*gilmsg.Bus, error) {
		cfg := local.Config(name)
		cfg.Endpoints = maps.Clone(endpoints)
		return local.Join(cfg)
	}
	app, err := start("app01")
	if err != nil {
		return err
	}
	bridgeBus, err := start("bridge01")
	if err != nil {
		return err
	}
	toAMQP, err := amqpbridge.NewZmqToAMQP(bridgeBus, bc)
	if err != nil {
		return err
	}
	toBus, err := amqpbridge.NewAMQPToZmq(bridgeBus, bc)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- toAMQP.Run(rctx) }()
	go func() { done <- toBus.Run(rctx) }()
	defer func() {
		stop()
		<-done
		<-done
	}()

	// 1. Bus → broker. With the bridge as recipient, Publish returns once
	// the broker has confirmed the message: "durably in the broker".
	r, err := app.Publish(ctx, "order.created", map[string]any{"order": 42},
		gilmsg.WithRecipients("bridge01"), gilmsg.WithAckTimeout(10*time.Second))
	if err != nil {
		return err
	}
	fmt.Printf("1. app01 published %s; bridge01 ACKed after the broker's confirm (%v)\n", r.MsgID, r.Acks[0].Delay.Round(time.Millisecond))
	d, ok, err := ch.Get(watch, true)
	if err != nil || !ok {
		return fmt.Errorf("not in the broker: %v", err)
	}
	fmt.Printf("   in the broker: routing key %s, message_id %s, body %s, headers %v\n", d.RoutingKey, d.MessageId, d.Body, d.Headers)

	// 2. Broker → bus: what a fedora-messaging publisher sends arrives
	// signed by bridge01, under the message_id.
	sub, err := app.Subscribe(ctx, "org.fedoraproject.")
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := ch.PublishWithContext(ctx, bc.ConsumeExchange, "org.fedoraproject.prod.bodhi.update.comment", false, false, amqp.Publishing{
		MessageId: "5e1f-example", ContentType: "application/json", DeliveryMode: amqp.Persistent,
		Body: []byte(`{"comment": {"text": "works for me", "karma": 1}}`),
	}); err != nil {
		return err
	}
	m, err := sub.Next(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("2. on the bus: %s, msg_id %s, username %s, signed by %s, msg %v\n", m.Topic, m.MsgID, m.Username, m.Signer, m.Msg())

	// 3. No loop: zmq-to-amqp saw the bridged message and dropped it
	// (username amqp-bridge); the broker got only app01's message.
	deadline := time.Now().Add(10 * time.Second)
	for toAMQP.Stats().Dropped[amqpbridge.ErrLoop.Error()] == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	q, err := ch.QueueDeclarePassive(watch, true, false, false, false, nil)
	if err != nil {
		return err
	}
	fmt.Printf("3. no loop: zmq-to-amqp dropped %v; %d more messages reached the broker\n", toAMQP.Stats().Dropped, q.Messages)
	if q.Messages != 0 {
		return errors.New("a message came back round")
	}
	return nil
}

// freeAddr is a loopback address nobody listens on right now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}
