// Consumer: hub-style consumers, as Python gilmsg's GilmsgConsumer, served
// by Bus.RunConsumers. With WithAckAfterConsume a message is ACKed only once
// every consumer has processed it, so the publisher learns that it was
// handled, not just received.
//
//	go run ./examples/consumer
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/examples/internal/localbus"
)

// Invoicer is a consumer written as a type, as a hub consumer is in
// Python; it refuses orders without an amount.
type Invoicer struct{}

// Topic is the prefix of the topics Invoicer gets.
func (Invoicer) Topic() string { return "org.example.dev.shop.order." }

// Consume handles one message; an error withholds the ACK.
func (Invoicer) Consume(_ context.Context, m *gilmsg.Message) error {
	var order struct {
		ID     int     `json:"order"`
		Amount float64 `json:"amount"`
	}
	if err := m.Decode(&order); err != nil {
		return err
	}
	if order.Amount <= 0 {
		fmt.Printf("  invoicer: order %d has no amount, refused\n", order.ID)
		return fmt.Errorf("order %d: no amount", order.ID)
	}
	fmt.Printf("  invoicer: order %d invoiced, %.2f EUR\n", order.ID, order.Amount)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := localbus.New("shop01", "billing01")
	if err != nil {
		return err
	}
	defer local.Close()
	billing, err := local.Start("billing01")
	if err != nil {
		return err
	}
	shop, err := local.Start("shop01", gilmsg.WithModname("shop"))
	if err != nil {
		return err
	}

	// A second consumer, from a function: it sees everything shop01 says.
	audited := make(chan string, 16)
	auditor := gilmsg.ConsumerFunc("org.example.dev.shop.", func(_ context.Context, m *gilmsg.Message) error {
		fmt.Printf("  auditor: %s %v\n", m.Topic, m.Msg())
		audited <- m.Topic
		return nil
	})

	// Both consumers share one subscription. A consumer's error is logged
	// (through WithLogger; silent here) and does not stop the others.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() {
		ran <- billing.RunConsumers(runCtx, []gilmsg.Consumer{Invoicer{}, auditor},
			gilmsg.WithAckAfterConsume(),
			gilmsg.WithSubscribeOptions(gilmsg.WithEndpoints(shop.Endpoint())))
	}()
	if err := shop.WaitSubscribers(ctx, "", 1); err != nil {
		return err
	}

	orders := []map[string]any{
		{"order": 1, "amount": 25.5},
		{"order": 2}, // the invoicer refuses it
	}
	for _, o := range orders {
		fmt.Printf("shop01 publishes order %v to billing01\n", o["order"])
		_, err := shop.Publish(ctx, "order.created", o,
			gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(500*time.Millisecond))
		var timeout *gilmsg.AckTimeoutError
		switch {
		case errors.As(err, &timeout):
			fmt.Printf("  not processed by %v: the publisher can retry or alert\n", timeout.Missing)
		case err != nil:
			return err
		default:
			fmt.Println("  processed by billing01")
		}
	}

	// Plain messages are consumed too, and never ACKed.
	fmt.Println("shop01 publishes a plain message")
	if _, err := shop.Publish(ctx, "cart.abandoned", map[string]any{"cart": 9}); err != nil {
		return err
	}
	for topic := ""; topic != "org.example.dev.shop.cart.abandoned"; {
		select {
		case topic = <-audited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	stop()
	if err := <-ran; err != nil {
		return err
	}
	st := billing.Stats()
	fmt.Printf("billing01: %d ACKs sent, %d resends dropped as duplicates\n", st.AcksSent, st.Duplicates)
	return nil
}
