package main

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// reliableRig is a publisher and the consumers that ACK its messages.
type reliableRig struct {
	pub       *gilmsg.Bus
	consumers []*gilmsg.Bus
	tails     []*benchTail // the consumers tailing now
}

// benchTail is one consumer's subscription, read (and so ACKed) by a
// goroutine until stopped.
type benchTail struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the first error Next returned, read after done
}

func (e *benchEnv) reliable(ctx context.Context) (*reliableRig, error) {
	if e.rel != nil {
		return e.rel, nil
	}
	rig := &reliableRig{}
	e.rel = rig
	// Consumers bind first: the publisher's ACK listener connects to the
	// recipients' endpoints, which its config must list.
	known := map[string][]string{}
	for i := range e.o.recipients {
		c, err := e.newBus(e.config(benchConsumer(i), nil))
		if err != nil {
			return nil, err
		}
		rig.consumers = append(rig.consumers, c)
		known[benchConsumer(i)] = []string{c.Endpoint()}
	}
	cfg := e.config(benchPublisher, known)
	pub, err := e.newBus(cfg)
	if err != nil {
		return nil, err
	}
	rig.pub = pub
	cfg.Endpoints[benchPublisher] = []string{pub.Endpoint()}
	return rig, nil
}

// tailN makes the first n consumers tail the publisher, and the others
// stop: a consumer ACKs every gilmsg message it sees, recipient or not, so
// idle ones would add their signatures to the cost.
func (e *benchEnv) tailN(ctx context.Context, n int) (*reliableRig, error) {
	rig, err := e.reliable(ctx)
	if err != nil {
		return nil, err
	}
	for len(rig.tails) > n {
		t := rig.tails[len(rig.tails)-1]
		rig.tails = rig.tails[:len(rig.tails)-1]
		if err := t.stop(); err != nil {
			return nil, err
		}
	}
	for i := len(rig.tails); i < n; i++ {
		sub, err := rig.consumers[i].Subscribe(ctx, benchPrefix, gilmsg.WithEndpoints(rig.pub.Endpoint()))
		if err != nil {
			return nil, err
		}
		tctx, cancel := context.WithCancel(context.Background())
		t := &benchTail{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(t.done)
			defer sub.Close()
			for {
				if _, err := sub.Next(tctx); err != nil {
					if tctx.Err() == nil && !errors.Is(err, gilmsg.ErrClosed) {
						t.err = err
					}
					return
				}
			}
		}()
		rig.tails = append(rig.tails, t)
	}
	if err := rig.pub.WaitSubscribers(ctx, "reliable", n); err != nil {
		return nil, err
	}
	return rig, nil
}

func (t *benchTail) stop() error {
	t.cancel()
	<-t.done
	return t.err
}

func (e *benchEnv) closeReliable() {
	if e.rel == nil {
		return
	}
	for _, t := range e.rel.tails {
		t.stop()
	}
	for _, c := range e.rel.consumers {
		c.Close()
	}
	if e.rel.pub != nil {
		e.rel.pub.Close()
	}
	e.rel = nil
}

func (e *benchEnv) recipients(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = benchConsumer(i)
	}
	return names
}

func (e *benchEnv) reliable1Phase(ctx context.Context, r *benchResults) error {
	defer e.closeReliable()
	var err error
	if r.rawReliable, err = e.rawReliable(ctx, r); err != nil {
		return err
	}
	r.lat1, r.allocsReliable, err = e.latencyPhase(ctx, 1)
	return err
}

// rawReliable is a reliable publish's work done with the primitives alone,
// crypto/rsa and pebbe/zmq4, one at a time: sign the message, send it with
// its signature, receive it, verify it, sign the ACK, send it back,
// receive it, verify it. The bodies have the sizes of a signed message
// and of its ACK.
func (e *benchEnv) rawReliable(ctx context.Context, r *benchResults) (latencies, error) {
	key, msgText := e.rsaKey, e.rsaText
	ackText, err := gilmsg.MarshalCanonical(map[string]any{
		"crypto": "x509", "topic": benchPrefix + "gilmsg.ack", "msg": map[string]any{"ack_msg_id": "2026-" + uuid.NewString()},
		"timestamp": time.Now().Unix(), "msg_id": "2026-" + uuid.NewString(), "i": 1, "username": "bench",
	})
	if err != nil {
		return latencies{}, err
	}
	// What a signed body adds to its signed text: signature and certificate.
	overhead := max(r.signedBodyBytes-len(msgText), key.Size())
	// sign makes a body of text's signed size that starts with the signature.
	sign := func(text []byte) ([]byte, error) {
		sig, err := rsaSign(key, text)
		if err != nil {
			return nil, err
		}
		return append(sig, make([]byte, len(text)+overhead-len(sig))...), nil
	}
	verify := func(text, body []byte) error {
		if len(body) < key.Size() {
			return errors.New("raw reliable: body too short for a signature")
		}
		return rsaVerify(key, text, body[:key.Size()])
	}
	return e.rawExchange(ctx, []byte(benchPrefix+"msg"),
		func() ([]byte, error) { return sign(msgText) },
		func(msg []byte) ([]byte, error) {
			if err := verify(msgText, msg); err != nil {
				return nil, err
			}
			return sign(ackText)
		},
		func(ack []byte) error { return verify(ackText, ack) })
}

func (e *benchEnv) reliableNPhase(ctx context.Context, r *benchResults) error {
	defer e.closeReliable()
	var err error
	r.latN, _, err = e.latencyPhase(ctx, e.o.recipients)
	return err
}

// latencyPhase times reliable publishes one at a time, each waiting for
// the ACKs of n recipients.
func (e *benchEnv) latencyPhase(ctx context.Context, n int) (latencies, float64, error) {
	rig, err := e.tailN(ctx, n)
	if err != nil {
		return latencies{}, 0, err
	}
	publish := func() (time.Duration, error) {
		start := time.Now()
		_, err := rig.pub.Publish(ctx, "reliable", e.payload,
			gilmsg.WithRecipients(e.recipients(n)...), gilmsg.WithAckTimeout(benchAckTimeout))
		return time.Since(start), err
	}
	// The first publish starts the ACK listener; the first few pay for
	// connections and caches.
	for range 5 {
		if _, err := publish(); err != nil {
			return latencies{}, 0, err
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU()
	var samples []time.Duration
	for start := time.Now(); len(samples) < benchMinSamples || time.Since(start) < e.o.duration; {
		d, err := publish()
		if err != nil {
			return latencies{}, 0, err
		}
		samples = append(samples, d)
		e.prog.count.Store(int64(len(samples)))
	}
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&after)
	lat := summarize(samples)
	lat.cpuUS = cpuUS(cpu, len(samples))
	return lat, float64(after.Mallocs-before.Mallocs) / float64(len(samples)), nil
}

func summarize(samples []time.Duration) latencies {
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencies{p50: ms(percentile(samples, 0.50)), p99: ms(percentile(samples, 0.99)), max: ms(samples[len(samples)-1])}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// concurrentPhase keeps concurrency reliable publishes to one recipient in
// flight for the duration; its bound, the parallel RSA rates, is measured
// just before and just after.
func (e *benchEnv) concurrentPhase(ctx context.Context, r *benchResults) error {
	defer e.closeReliable()
	rig, err := e.tailN(ctx, 1)
	if err != nil {
		return err
	}
	publish := func() error {
		_, err := rig.pub.Publish(ctx, "reliable", e.payload,
			gilmsg.WithRecipients(benchConsumer(0)), gilmsg.WithAckTimeout(benchAckTimeout))
		return err
	}
	// The rig is new: the first publishes start its ACK listener and
	// validate the certificates.
	for range 5 {
		if err := publish(); err != nil {
			return err
		}
	}
	bound := func() error {
		return inPhase(ctx, "parallel_rsa", func(ctx context.Context) error { return e.parallelRSA(ctx, r, e.o.duration/4) })
	}
	if err := bound(); err != nil {
		return err
	}
	resendsBefore := rig.pub.Stats().Resends
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, e.o.concurrency)
	cpu0 := processCPU()
	start := time.Now()
	for w := range e.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < e.o.duration || done.Load() < benchMinMessages {
				if err := publish(); err != nil {
					errs[w] = err
					return
				}
				e.prog.count.Store(done.Add(1))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.cpuConcurrent = cpuUS(processCPU()-cpu0, int(done.Load()))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.concurrent = float64(done.Load()) / elapsed.Seconds()
	r.concurrentResends = rig.pub.Stats().Resends - resendsBefore
	return bound()
}
