package gilmsg

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// TestAckAsyncChaos: several WithManualAck subscriptions of one bus, each
// message ACKed from a goroutine of its own (some twice, some with their
// ctx ended), while Subscription.Close and Bus.Close come from other
// goroutines. Nothing panics or races (-race), Close returns, every
// AckAsync that said nil was sent (the publisher got the ACK) and every
// one after the close says ErrClosed, and no goroutine is left (the
// test net's leak check).
func TestAckAsyncChaos(t *testing.T) {
	rounds := 1
	if os.Getenv("GILMSG_LONG") != "" {
		rounds = 30
	}
	for range rounds {
		ackAsyncChaos(t)
	}
}

func ackAsyncChaos(t *testing.T) {
	const subs, n = 3, 24
	net := newTestNet(t)
	pub := net.start(pubCN)
	cons := net.start(c1)
	all := make([]*Subscription, subs)
	for i := range all {
		var err error
		if all[i], err = cons.Subscribe(ctxT(t), "", WithManualAck()); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.WaitSubscribers(ctxT(t), "job", subs); err != nil {
		t.Fatal(err)
	}
	fs := publishN(t, pub, n, msgID)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	var (
		acking  sync.WaitGroup
		readers sync.WaitGroup
		mu      sync.Mutex
		queued  = map[string]bool{} // msg_ids an AckAsync said nil for
	)
	ack := func(m *Message, ctx context.Context) {
		defer acking.Done()
		err := m.AckAsync(ctx)
		switch {
		case err == nil:
			mu.Lock()
			queued[m.MsgID] = true
			mu.Unlock()
		case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		default:
			t.Errorf("AckAsync %s: %v", m.MsgID, err)
		}
	}
	var got atomic.Int64
	last := make([]*Message, subs) // each reader's last message
	for i, sub := range all {
		readers.Go(func() {
			for k := 0; ; k++ {
				m, err := sub.Next(ctxT(t))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Next: %v", err)
					return
				}
				got.Add(1)
				last[i] = m
				acking.Add(1)
				go ack(m, context.Background())
				switch (i + k) % 4 {
				case 1: // twice: two ACKs of one message
					acking.Add(1)
					go ack(m, context.Background())
				case 2: // its ctx ended: the queue has room, so it is queued all the same
					acking.Add(1)
					go ack(m, ended)
				}
			}
		})
	}
	waitFor(t, "some messages read", func() bool { return got.Load() >= n })
	var closers sync.WaitGroup
	closers.Go(func() { all[0].Close() })
	closers.Go(func() { cons.Close() })
	closers.Go(func() { all[1].Close() })
	closers.Wait()
	readers.Wait()
	acking.Wait()
	for _, m := range last {
		if m != nil && needsAck(m.Envelope) {
			if err := m.AckAsync(context.Background()); !errors.Is(err, ErrClosed) {
				t.Errorf("AckAsync after Close: %v, want ErrClosed", err)
			}
		}
	}
	for i, f := range fs {
		mu.Lock()
		q := queued[msgID(i)]
		mu.Unlock()
		if !q {
			continue
		}
		if _, err := f.Result(); err != nil {
			t.Errorf("publish %d, whose AckAsync said nil: %v", i, err)
		}
	}
}
