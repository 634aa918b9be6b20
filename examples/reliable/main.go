// Reliable: gilmsg's publish with recipients. Each message waits for a
// signed ACK from every named recipient, and a timeout says exactly who
// did not answer.
//
//	go run ./examples/reliable
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

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reliable:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := localbus.New("shop01", "billing01", "audit01")
	if err != nil {
		return err
	}
	defer local.Close()

	// The recipients start first, so that shop01's configuration lists
	// their endpoints: its ACK listener connects to them.
	billing, err := local.Start("billing01")
	if err != nil {
		return err
	}
	audit, err := local.Start("audit01")
	if err != nil {
		return err
	}
	shop, err := local.Start("shop01", gilmsg.WithModname("shop"))
	if err != nil {
		return err
	}

	// Each recipient tails shop01. Tail ACKs every gilmsg message before
	// yielding it, as Python's gilmsg.tail_messages does.
	tailCtx, stopTails := context.WithCancel(ctx)
	defer stopTails()
	for _, r := range []*gilmsg.Bus{billing, audit} {
		go func() {
			for m, err := range r.Tail(tailCtx, r.FullTopic("shop", ""), gilmsg.WithEndpoints(shop.Endpoint())) {
				if err == nil {
					fmt.Printf("  %s got %v\n", r.Config().Name, m.Msg())
				}
			}
		}()
	}

	// 1. Both recipients are up. No sleep is needed before the first
	// publish: the message is sent again until every ACK is in.
	fmt.Println("order 1 to billing01 and audit01:")
	receipt, err := shop.Publish(ctx, "order.created", map[string]any{"order": 1},
		gilmsg.WithRecipients("billing01", "audit01"), gilmsg.WithAckTimeout(2*time.Second))
	if err != nil {
		return err
	}
	for _, ack := range receipt.Acks {
		fmt.Printf("  ACKed by %s after %v\n", ack.Recipient, ack.Delay.Round(time.Microsecond))
	}

	// 2. audit01 goes away. The publish fails after the ACK timeout with
	// an error that names who ACKed and who did not.
	audit.Close()
	fmt.Println("order 2, audit01 down:")
	_, err = shop.Publish(ctx, "order.created", map[string]any{"order": 2},
		gilmsg.WithRecipients("billing01", "audit01"), gilmsg.WithAckTimeout(300*time.Millisecond))
	var timeout *gilmsg.AckTimeoutError
	if !errors.As(err, &timeout) {
		return fmt.Errorf("want an ACK timeout, got %v", err)
	}
	fmt.Printf("  timed out after %v: missing %v", timeout.Timeout, timeout.Missing)
	for _, ack := range timeout.Acked {
		fmt.Printf(", ACKed by %s", ack.Recipient)
	}
	fmt.Println()

	// 3. Many reliable publishes at once, without a goroutine each.
	fmt.Println("orders 3 to 7, published concurrently to billing01:")
	var futures []*gilmsg.PubFuture
	for i := 3; i <= 7; i++ {
		f, err := shop.PublishAsync(ctx, "order.created", map[string]any{"order": i},
			gilmsg.WithRecipients("billing01"), gilmsg.WithAckTimeout(2*time.Second))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	if err := shop.WaitAsync(ctx); err != nil {
		return err
	}
	acked := 0
	for _, f := range futures {
		if f.Err() == nil {
			acked++
		}
	}
	fmt.Printf("  %d of %d ACKed\n", acked, len(futures))

	st := shop.Stats()
	fmt.Printf("shop01: %d reliable publishes, %d ACKed, %d timed out, %d resends\n",
		st.ReliablePublishes, st.Acked, st.TimedOut, st.Resends)
	return nil
}
