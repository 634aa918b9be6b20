package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// BenchmarkStoredPublish is `gilmsg bench`'s stored phase: 64 goroutines
// publish unsigned on a bus with an SQLite store, so that their writes
// share transactions; with tail, a subscriber in the same process reads
// every message and its seq_id, as the bench's does.
func BenchmarkStoredPublish(b *testing.B) {
	b.Run("publish", func(b *testing.B) { benchStoredPublish(b, false, false) })
	b.Run("tail", func(b *testing.B) { benchStoredPublish(b, true, false) })
	b.Run("signed", func(b *testing.B) { benchStoredPublish(b, false, true) })
}

func benchStoredPublish(b *testing.B, tail, sign bool) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:///"+filepath.Join(b.TempDir(), "store.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	cfg := gilmsg.DefaultConfig()
	if sign {
		pki, err := devpki.New(b.TempDir(), devpki.Options{Hosts: []string{"bench"}})
		if err != nil {
			b.Fatal(err)
		}
		cfg = pki.Config()
	}
	cfg.TopicPrefix = "org.fedoraproject"
	cfg.Name = "bench"
	cfg.Endpoints = map[string][]string{"bench": {"tcp://127.0.0.1:*"}}
	cfg.ValidateSignatures = false
	cfg.SignMessages = sign
	cfg.HighWaterMark = 0
	var commits atomic.Int64
	hooks := &gilmsg.Hooks{StoreLag: func(time.Duration) { commits.Add(1) }}
	bus, err := gilmsg.New(cfg, gilmsg.WithStore(st), gilmsg.WithModname("bench"), gilmsg.WithHooks(hooks))
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	var sub *gilmsg.Subscription
	if tail {
		tcfg := gilmsg.DefaultConfig()
		tcfg.TopicPrefix = "org.fedoraproject"
		tcfg.ValidateSignatures = false
		tcfg.HighWaterMark = 0
		tb, err := gilmsg.New(tcfg)
		if err != nil {
			b.Fatal(err)
		}
		defer tb.Close()
		if sub, err = tb.Subscribe(ctx, "org.fedoraproject", gilmsg.WithEndpoints(bus.Endpoint()), gilmsg.WithoutReplay(), gilmsg.WithoutValidation()); err != nil {
			b.Fatal(err)
		}
		if err := bus.WaitSubscribers(ctx, "msg", 1); err != nil {
			b.Fatal(err)
		}
	}
	// About 1 KB with its envelope, as `gilmsg bench`'s.
	payload := map[string]any{
		"agent": "gilmsg-bench", "instance": "primary", "request_id": "c0ffee00-1234-4abc-9def-0123456789ab",
		"build": map[string]any{"id": 2412345, "name": "gilmsg-go", "version": "1.4.2", "release": "1.fc41",
			"epoch": nil, "owner": "bench", "state": 1, "task_id": 123456789,
			"tags": []any{"f41-updates-candidate", "f41-signing-pending"}},
		"url":       "https://koji.example.org/koji/buildinfo?buildID=2412345",
		"changelog": strings.Repeat("- Rebuilt for the benchmark; nothing changed. ", 12),
	}
	if _, err := bus.Publish(ctx, "msg", payload); err != nil { // past the bus's warm-up
		b.Fatal(err)
	}
	if tail {
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	commits.Store(0)
	const writers = 64
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := bus.Publish(ctx, "msg", payload); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	if tail {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for range b.N {
			m, err := sub.Next(rctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := m.SeqID(); !ok {
				b.Fatalf("message %s has no seq_id", m.MsgID)
			}
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(b.N)/float64(commits.Load()), "msgs/commit")
}

// BenchmarkSQLiteAppend is the store's own part of it: one Append of a
// batch of n unsigned entries, per n messages.
func BenchmarkSQLiteAppend(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			ctx := context.Background()
			st, err := sqlstore.Open(ctx, "sqlite:///"+filepath.Join(b.TempDir(), "store.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			body := []byte(`{"i": 1, "msg": {"text": "a message of some length, as a service would publish", "n": 12345}, "msg_id": "2026-0123456789abcdef", "timestamp": 1765000000, "topic": "org.fedoraproject.dev.bench.msg", "username": "root"}`)
			entries := make([]*gilmsg.StoreEntry, n)
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i += n {
				for j := range entries {
					entries[j] = &gilmsg.StoreEntry{MsgID: fmt.Sprintf("2026-%d-%d", i, j), Topic: "org.fedoraproject.dev.bench.msg", Timestamp: 1765000000,
						Encode: func(int64) ([]byte, error) { return body, nil }}
				}
				if err := st.Append(ctx, &gilmsg.Batch{Entries: entries}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time (user and system) of the process so far: on a
// shared machine, a truer measure of what a message costs than its
// wall-clock time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
