package gilmsg

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// longRun reports whether the full-size load tests run (make test-long);
// make test runs them scaled down.
func longRun() bool { return os.Getenv("GILMSG_LONG") != "" }

func scaled(full, short int) int {
	if longRun() {
		return full
	}
	return short
}

// heapAndGoroutines settles the runtime and reads the live heap and the
// goroutine count.
func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, runtime.NumGoroutine()
}

// Many messages to three consumers: none lost, none duplicated for the
// application, and memory and goroutines flat afterwards.
func TestLoadFanOut(t *testing.T) {
	total := scaled(20000, 2000)
	n := newTestNet(t)
	n.mutate = func(c *Config) { c.SignMessages = false; c.ValidateSignatures = false; c.HighWaterMark = 0 }
	pub := n.start(pubCN)
	names := []string{c1, c2, c3}
	cs, _ := n.consumers(t, names...)
	if err := pub.WaitSubscribers(ctxT(t), "load", len(names)); err != nil {
		t.Fatal(err)
	}
	heap0, _ := heapAndGoroutines()
	ids := make([]string, total)
	for i := range total {
		r, err := pub.Publish(context.Background(), "load", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.MsgID
	}
	for _, name := range names {
		waitFor(t, name+" to receive everything", func() bool {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			return len(cs.seen[name]) == total
		})
	}
	cs.mu.Lock()
	for _, name := range names {
		for _, id := range ids {
			if c := cs.seen[name][id]; c != 1 {
				t.Errorf("%s saw %s %d times", name, id, c)
			}
		}
	}
	cs.mu.Unlock()
	// What the test itself keeps (ids and the counts) grows with total;
	// the bus must not add more than a bounded amount.
	heap1, _ := heapAndGoroutines()
	if grown := int64(heap1) - int64(heap0); grown > 64<<20 {
		t.Errorf("heap grew by %d MB over %d messages", grown>>20, total)
	}
	t.Logf("%d messages × %d consumers, heap %d → %d MB", total, len(names), heap0>>20, heap1>>20)
}

// Many reliable publishes to three recipients, concurrently: every one
// ACKed by all, and goroutines back where they were when the buses close.
func TestLoadReliable(t *testing.T) {
	total := scaled(2000, 100)
	_, g0 := heapAndGoroutines()
	func() {
		n := newTestNet(t)
		pub := n.start(pubCN, WithMaxInFlight(64))
		names := []string{c1, c2, c3}
		_, buses := n.consumers(t, names...)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		var mu sync.Mutex
		failed := 0
		for i := range total {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				r, err := pub.Publish(ctxT(t), "job", map[string]any{"i": i}, WithRecipients(names...), WithAckTimeout(30*time.Second))
				if err != nil || len(r.Acks) != len(names) {
					mu.Lock()
					failed++
					mu.Unlock()
					t.Errorf("publish %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if s := pub.Stats(); s.Acked != uint64(total) || failed != 0 {
			t.Fatalf("%d of %d ACKed by all (%d failed)", s.Acked, total, failed)
		}
		t.Logf("%d reliable publishes to %d recipients: %+v", total, len(names), pub.Stats())
		for _, b := range append(buses, pub) {
			b.Close()
		}
	}()
	waitFor(t, "goroutines to settle", func() bool {
		_, g1 := heapAndGoroutines()
		return g1 <= g0+2
	})
}
