// Package zbench times messages through a ZeroMQ path, for the
// benchmarks of the root's relay and of the gateway beside it (which
// cannot share a _test.go file).
package zbench

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Topic is the topic [PubSub] sends on.
const Topic = "org.fedoraproject.prod.bench.message"

// RunUntilEnd runs run in a goroutine until the benchmark or test ends,
// then cancels its context and waits for it to return.
func RunUntilEnd(tb testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	tb.Cleanup(func() { cancel(); <-errc })
}

// Probe sends probes from pub until one reaches sub (subscribed to
// everything); later ones may still come, and [PubSub] skips them.
func Probe(b *testing.B, pub, sub *zmq.Socket) {
	b.Helper()
	poller := zmq.NewPoller()
	poller.Add(sub, zmq.POLLIN)
	for deadline := time.Now().Add(10 * time.Second); ; {
		pub.SendMessage("probe", "")
		if polled, _ := poller.Poll(10 * time.Millisecond); len(polled) > 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("pub/sub never connected")
		}
	}
}

// PubSub probes until the path works, then times b.N messages of body
// from a goroutine owning pub to this goroutine owning sub.
func PubSub(b *testing.B, pub, sub *zmq.Socket, body []byte) {
	b.Helper()
	Probe(b, pub, sub)
	b.SetBytes(int64(len(Topic) + len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	sent := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := pub.SendMessage(Topic, body); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for n := 0; n < b.N; {
		msg, err := sub.RecvMessageBytes(0)
		if err != nil {
			b.Fatal(err)
		}
		if string(msg[0]) != "probe" {
			n++
		}
	}
	b.StopTimer()
	if err := <-sent; err != nil {
		b.Fatal(err)
	}
}
