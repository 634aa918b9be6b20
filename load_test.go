package gilmsg

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Reliable publishes under load, through PublishAsync, with resends early
// enough that consumers receive copies: every publish ACKed by all three,
// each consumer's application sees each message exactly once, and nothing
// the bus keeps per publish (waiting publishes, in-flight slots, heap,
// goroutines) outlives the load. Full size with GILMSG_LONG=1 (make
// test-long); soak_test.go counts plain fan-out and concurrent Publish
// calls.
func TestLoadReliableExactlyOnce(t *testing.T) {
	total := scaled(2000, 100)
	warm := max(total/10, 20)
	names := []string{c1, c2, c3}
	_, g0 := heapAndGoroutines()
	func() {
		n := newTestNet(t)
		const window = 64
		pub := n.start(pubCN, WithMaxInFlight(window), WithResendDelays(5*time.Millisecond, 50*time.Millisecond))
		buses := make([]*Bus, len(names))
		for i, name := range names {
			buses[i] = n.start(name)
		}
		// Closed when this function returns, not at the end of the test:
		// the goroutine count is compared after.
		defer func() {
			for _, b := range append(buses, pub) {
				b.Close()
			}
		}()
		// Each consumer counts the jobs only: tailing everything, it would
		// also verify the other consumers' ACKs.
		prefix := pub.fullTopic("job", "")
		var mu sync.Mutex
		seen := map[string]map[string]int{}
		for i, name := range names {
			seen[name] = map[string]int{}
			ch := tail(t, buses[i], prefix)
			go func() {
				for m := range ch {
					mu.Lock()
					// A clone: msg_id shares the memory of the whole body
					// it was decoded from, which the count must not keep.
					seen[name][strings.Clone(m.MsgID)]++
					mu.Unlock()
				}
			}()
		}
		if err := pub.WaitSubscribers(ctxT(t), "job", len(names)); err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var ids []string
		// publish keeps window publishes in flight, waiting for the oldest
		// before starting one more, and checks each result.
		publish := func(count int) {
			var futures []*PubFuture
			wait := func(f *PubFuture) {
				r, err := f.Result()
				if err != nil {
					t.Errorf("reliable publish: %v", err)
					return
				}
				if !sameSet(hostsOf(r.Acks), names) {
					t.Errorf("%s ACKed by %v", r.MsgID, hostsOf(r.Acks))
				}
				ids = append(ids, r.MsgID)
			}
			for i := range count {
				if len(futures) == window {
					wait(futures[0])
					futures = futures[1:]
				}
				f, err := pub.PublishAsync(ctx, "job", map[string]any{"i": i}, WithRecipients(names...), WithAckTimeout(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				wait(f)
			}
		}
		publish(warm)
		heap1, g1 := heapAndGoroutines()
		publish(total - warm)
		if t.Failed() {
			return
		}
		// Every publish has returned, so nothing may still wait for ACKs.
		pub.acks.mu.Lock()
		waiting := len(pub.acks.waiting)
		pub.acks.mu.Unlock()
		if waiting != 0 || pub.PublishAsyncPending() != 0 {
			t.Errorf("after the load: %d publishes still registered, %d async pending", waiting, pub.PublishAsyncPending())
		}
		// A plain marker through each connection: what came before it
		// has been counted once it has.
		marker, err := pub.Publish(ctxT(t), "job", map[string]any{"marker": true})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			waitFor(t, name+" to see the marker", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return seen[name][marker.MsgID] == 1
			})
		}
		mu.Lock()
		lostOrTwice := 0
		for _, name := range names {
			for _, id := range ids {
				if c := seen[name][id]; c != 1 {
					lostOrTwice++
					t.Errorf("%s's application saw %s %d times", name, id, c)
				}
			}
			if got := len(seen[name]); got != total+1 {
				t.Errorf("%s saw %d distinct messages, want %d", name, got, total+1)
			}
		}
		mu.Unlock()
		heap2, g2 := heapAndGoroutines()
		if grown := int64(heap2) - int64(heap1); grown > 32<<20 {
			t.Errorf("heap grew by %d MB over %d reliable publishes", grown>>20, total-warm)
		}
		if g2 > g1+5 {
			t.Errorf("goroutines %d after the load, %d after the warm-up", g2, g1)
		}
		var dups uint64
		for _, b := range buses {
			dups += b.Stats().Duplicates
		}
		s := pub.Stats()
		t.Logf("%d reliable publishes × %d recipients: %d ACKed, %d resends, %d copies dropped by consumers, %d lost or twice; "+
			"heap %d → %d MB, goroutines %d → %d; rejected ACKs %v",
			total, len(names), s.Acked, s.Resends, dups, lostOrTwice, heap1>>20, heap2>>20, g1, g2, s.AcksRejected)
	}()
	waitFor(t, "goroutines to settle once the buses are closed", func() bool {
		_, g := heapAndGoroutines()
		return g <= g0+2
	})
}

// What a subscription remembers to drop resent copies (the last 4096
// msg_ids by default) must cost about the ids, whatever the size of the
// messages they came in: large messages through a subscription leave the
// heap where it was once they have been read.
func TestDedupeKeepsIDsNotBodies(t *testing.T) {
	total := scaled(2000, 600)
	const size = 64 << 10
	pad := strings.Repeat("x", size)
	heap0, heap1 := heapAfterReading(t, total, func(pub *Bus, i int) error {
		_, err := pub.Publish(ctxT(t), "big", map[string]any{"i": i, "pad": pad})
		return err
	})
	grown := int64(heap1) - int64(heap0)
	t.Logf("%d messages of %d kB read: heap %d → %d MB", total, size>>10, heap0>>20, heap1>>20)
	// The ids themselves: a few hundred bytes each with the set's
	// bookkeeping; the bodies would be total × size.
	if limit := int64(16 << 20); grown > limit {
		t.Fatalf("heap grew by %d MB after reading %d messages of %d kB: the dedupe set keeps the bodies its msg_ids were cut from",
			grown>>20, total, size>>10)
	}
}

// A publisher may choose msg_ids of any length up to the message size: the
// dedupe set of a subscription that reads them stays bounded in bytes, not
// only in ids (4096 msg_ids of 128 kB would be 512 MB kept).
func TestDedupeBoundedInBytes(t *testing.T) {
	total := scaled(4000, 400)
	const idSize = 128 << 10
	pad := strings.Repeat("x", idSize)
	heap0, heap1 := heapAfterReading(t, total, func(pub *Bus, i int) error {
		_, err := pub.Publish(ctxT(t), "big", map[string]any{"i": i}, WithMsgID(fmt.Sprintf("%06d-%s", i, pad)))
		return err
	})
	grown := int64(heap1) - int64(heap0)
	t.Logf("%d messages with msg_ids of %d kB read: heap %d → %d MB", total, idSize>>10, heap0>>20, heap1>>20)
	if limit := int64(dedupeBytes + 16<<20); grown > limit {
		t.Fatalf("heap grew by %d MB after %d msg_ids of %d kB (%d MB of ids): the dedupe set is not bounded in bytes",
			grown>>20, total, idSize>>10, int64(total)*idSize>>20)
	}
}

// heapAfterReading starts an unsigned publisher and a subscription of
// the default dedupe set, publishes total messages on "big" with
// publish, waits until all are read, and returns the live heap before
// the first and after the last.
func heapAfterReading(t *testing.T, total int, publish func(pub *Bus, i int) error) (heap0, heap1 uint64) {
	t.Helper()
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false }
	pub := n.start(pubCN)
	sub := n.start("")
	ch := tail(t, sub, "")
	if err := pub.WaitSubscribers(ctxT(t), "big", 1); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	go func() {
		for range ch {
			got.Add(1)
		}
	}()
	heap0, _ = heapAndGoroutines()
	for i := range total {
		if err := publish(pub, i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message to be read", func() bool { return got.Load() == int64(total) })
	heap1, _ = heapAndGoroutines()
	return heap0, heap1
}
