package amqpbridge_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/amqpbridge"
)

// A bus → broker bridge as a service: the bus named in the fedmsg
// configuration, the broker from its amqp_* keys. Publishers that list
// the bridge's CN among their recipients learn that the broker has their
// message.
//
// The bridge examples have no output, so go test compiles them without
// running them: they need the machine's fedmsg configuration and a
// broker, and run until a signal. examples/amqp-bridge runs both
// directions against a broker you name, and the package's tests do so
// against a throwaway one.
func ExampleNewZmqToAMQP() {
	cfg, err := gilmsg.LoadConfig()
	if err != nil {
		log.Fatal(err)
	}
	cfg.Name = "bridge01" // its endpoint and its certificate
	bus, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	bc, err := amqpbridge.FromConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	bridge, err := amqpbridge.NewZmqToAMQP(bus, bc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := bridge.Run(ctx); err != nil { // until SIGINT; broker outages are retried
		log.Fatal(err)
	}
}

// The other way: broker messages onto the bus, signed by the bridge, each
// acked on the broker only once billing01 has ACKed it on the bus. No
// output, as above: it needs a broker, and runs until the broker or the
// bus goes away for good.
func ExampleNewAMQPToZmq() {
	cfg, err := gilmsg.LoadConfig()
	if err != nil {
		log.Fatal(err)
	}
	cfg.Name, cfg.SignMessages = "bridge01", true
	bus, err := gilmsg.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	bc, err := amqpbridge.FromConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	bc.Recipients = []string{"billing01"}
	bridge, err := amqpbridge.NewAMQPToZmq(bus, bc)
	if err != nil {
		log.Fatal(err)
	}
	if err := bridge.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
