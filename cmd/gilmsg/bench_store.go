package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// storedPhase is publish→tail unsigned with a persistent_store: each
// message gets its seq_id from an SQLite store and is written there before
// it is sent. Publish returns once the message is stored, so one
// goroutine would measure one transaction per message; the phase
// publishes from benchStoreWriters goroutines, whose writes share
// transactions (group commit), as a service's concurrent publishers do.
const benchStoreWriters = 64

func (e *benchEnv) storedPhase(ctx context.Context, r *benchResults) (err error) {
	r.stored, err = e.stored(ctx, false)
	return err
}

// storedSignedPhase is storedPhase signed and validated: the store's
// transaction waits for the batch's signatures (Batch.Seal signs them on
// every core).
func (e *benchEnv) storedSignedPhase(ctx context.Context, r *benchResults) (err error) {
	r.storedSigned, err = e.stored(ctx, true)
	return err
}

func (e *benchEnv) stored(ctx context.Context, sign bool) (float64, error) {
	dir, err := os.MkdirTemp("", "gilmsg-bench-store-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	st, err := sqlstore.Open(ctx, "sqlite:///"+filepath.Join(dir, "store.db"))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	pcfg := e.config(benchPublisher, nil)
	pcfg.SignMessages = sign
	pub, err := gilmsg.New(pcfg, gilmsg.WithModname(benchModname), gilmsg.WithStore(st))
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	tail, err := e.newBus(e.config("", nil))
	if err != nil {
		return 0, err
	}
	defer tail.Close()
	subOpts := []gilmsg.SubscribeOption{gilmsg.WithEndpoints(pub.Endpoint()), gilmsg.WithoutReplay()}
	if !sign {
		subOpts = append(subOpts, gilmsg.WithoutValidation())
	}
	sub, err := tail.Subscribe(ctx, benchPrefix, subOpts...)
	if err == nil {
		err = pub.WaitSubscribers(ctx, "msg", 1)
	}
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.o.duration+benchGrace)
	defer cancel()
	var sent atomic.Int64
	var pubErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range benchStoreWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < e.o.duration || sent.Load() < benchMinMessages {
				if _, err := pub.Publish(ctx, "msg", e.payload); err != nil {
					once.Do(func() { pubErr = err; cancel() })
					return
				}
				sent.Add(1)
			}
		}()
	}
	published := make(chan struct{})
	go func() { wg.Wait(); close(published) }()
	received := int64(0)
	last := start
	for {
		select {
		case <-published:
			if received >= sent.Load() {
				if pubErr != nil {
					return 0, pubErr
				}
				return float64(received) / last.Sub(start).Seconds(), nil
			}
		default:
		}
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		m, err := sub.Next(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() != nil {
				if pubErr != nil {
					return 0, pubErr
				}
				return 0, fmt.Errorf("%d of %d stored messages received: %w", received, sent.Load(), ctx.Err())
			}
			continue
		}
		if _, ok := m.SeqID(); !ok {
			return 0, fmt.Errorf("message %s has no seq_id", m.MsgID)
		}
		received++
		last = time.Now()
		e.prog.count.Store(received)
	}
}
