package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

type flowKind int

const (
	flowOther flowKind = iota // probes and strays: ignored
	flowData
	flowEnd
)

func classify(topic string) flowKind {
	switch topic {
	case benchPrefix + "msg":
		return flowData
	case benchPrefix + "end":
		return flowEnd
	}
	return flowOther
}

// flow is one throughput phase: a publisher goroutine calls send as fast
// as the window allows, then once with last set (the end marker, which
// arrives after every message of the one publisher); the caller's
// goroutine calls recv until the marker.
type flow struct {
	send    func(ctx context.Context, last bool) error
	recv    func(ctx context.Context) (flowKind, error)
	onCount func(n int) // called by the receiver after each message; may be nil
}

type flowResult struct {
	n       int
	elapsed time.Duration // from the first send to the last message received
	mallocs uint64
	cpu     time.Duration // the process's CPU over the same span
	// switches counts the process's context switches over the same span
	// (getrusage: voluntary and involuntary, every thread).
	switches int64
}

// cpuPerMsg is the process's CPU per message, in µs: both ends of the bus
// and libzmq's threads, steadier than a rate on a shared machine.
func (f flowResult) cpuPerMsg() float64 { return cpuUS(f.cpu, f.n) }

func cpuUS(cpu time.Duration, n int) float64 {
	return float64(cpu) / float64(time.Microsecond) / float64(max(n, 1))
}

// switchesPerMsg is how many times a message made the process's threads
// sleep or be preempted: the wake-ups along its way (libzmq's I/O
// threads, the reader's netpoller, the Go runtime's sysmon) show in it.
func (f flowResult) switchesPerMsg() float64 { return float64(f.switches) / float64(max(f.n, 1)) }

func (f flowResult) rate() float64 { return float64(f.n) / f.elapsed.Seconds() }

func (f flowResult) allocsPerMsg() float64 { return float64(f.mallocs) / float64(f.n) }

func (e *benchEnv) runFlow(ctx context.Context, f flow, d time.Duration, atLeast int) (flowResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+benchGrace)
	defer cancel()
	window := make(chan struct{}, benchWindow)
	type sentResult struct {
		n   int
		err error
	}
	sent := make(chan sentResult, 1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, sw0 := processCPU(), processSwitches()
	start := time.Now()
	go func() {
		n := 0
		err := func() error {
			for ; n < atLeast || time.Since(start) < d; n++ {
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				if err := f.send(ctx, false); err != nil {
					return err
				}
			}
			return f.send(ctx, true)
		}()
		if err != nil {
			cancel() // the receiver waits for a marker that will not come
		}
		sent <- sentResult{n, err}
	}()
	received := 0
	last := start
	for {
		kind, err := f.recv(ctx)
		if err != nil {
			cancel() // the publisher may be waiting for the window
			s := <-sent
			if s.err != nil {
				return flowResult{}, fmt.Errorf("publishing message %d: %w", s.n+1, s.err)
			}
			return flowResult{}, fmt.Errorf("%d of %d messages received: %w", received, s.n, err)
		}
		if kind == flowEnd {
			break
		}
		if kind != flowData {
			continue
		}
		received++
		last = time.Now()
		<-window
		e.prog.count.Store(int64(received))
		if f.onCount != nil {
			f.onCount(received)
		}
	}
	s := <-sent
	if s.err != nil {
		return flowResult{}, s.err
	}
	if received != s.n {
		return flowResult{}, fmt.Errorf("%d messages sent, %d received", s.n, received)
	}
	cpu, switches := processCPU()-cpu0, processSwitches()-sw0
	runtime.ReadMemStats(&after)
	return flowResult{n: received, elapsed: last.Sub(start), mallocs: after.Mallocs - before.Mallocs, cpu: cpu, switches: switches}, nil
}

// busFlow starts a publisher bus and a tailing bus for a throughput phase;
// stop closes both.
func (e *benchEnv) busFlow(ctx context.Context, sign bool) (fl flow, stop func(), err error) {
	pcfg := e.config(benchPublisher, nil)
	pcfg.SignMessages = sign
	pub, err := e.newBus(pcfg)
	if err != nil {
		return flow{}, nil, err
	}
	tail, err := e.newBus(e.config("", nil))
	if err != nil {
		pub.Close()
		return flow{}, nil, err
	}
	stop = func() {
		tail.Close()
		pub.Close()
	}
	opts := []gilmsg.SubscribeOption{gilmsg.WithEndpoints(pub.Endpoint())}
	if !sign {
		opts = append(opts, gilmsg.WithoutValidation())
	}
	sub, err := tail.Subscribe(ctx, benchPrefix, opts...)
	if err == nil {
		err = pub.WaitSubscribers(ctx, "msg", 1)
	}
	if err != nil {
		stop()
		return flow{}, nil, err
	}
	fl = flow{
		send: func(ctx context.Context, last bool) error {
			if last {
				_, err := pub.Publish(ctx, "end", nil)
				return err
			}
			_, err := pub.Publish(ctx, "msg", e.payload)
			return err
		},
		recv: func(ctx context.Context) (flowKind, error) {
			m, err := sub.Next(ctx)
			if err != nil {
				return 0, err
			}
			// A signed phase that validated nothing would measure the
			// wrong thing.
			if sign && m.Signer != benchPublisher {
				return 0, fmt.Errorf("message %s not validated (signer %q)", m.MsgID, m.Signer)
			}
			kind := classify(m.Topic)
			if kind == flowData {
				e.bodyBytes = len(m.Body)
			}
			return kind, nil
		},
	}
	return fl, stop, nil
}

func (e *benchEnv) unsignedPhase(ctx context.Context, r *benchResults) error {
	res, err := e.busFlowPhase(ctx, false)
	if err != nil {
		return err
	}
	r.unsigned, r.allocsUnsigned, r.cpuUnsigned = res.rate(), res.allocsPerMsg(), res.cpuPerMsg()
	return nil
}

func (e *benchEnv) signedPhase(ctx context.Context, r *benchResults) error {
	res, err := e.busFlowPhase(ctx, true)
	if err != nil {
		return err
	}
	r.signed, r.allocsSigned, r.cpuSigned = res.rate(), res.allocsPerMsg(), res.cpuPerMsg()
	r.switchesSigned = res.switchesPerMsg()
	r.signedBodyBytes = e.bodyBytes
	return nil
}

// busFlowPhase runs a bus publish→tail flow, signed or not, for the
// phase's duration.
func (e *benchEnv) busFlowPhase(ctx context.Context, signed bool) (flowResult, error) {
	fl, stop, err := e.busFlow(ctx, signed)
	if err != nil {
		return flowResult{}, err
	}
	defer stop()
	return e.runFlow(ctx, fl, e.o.duration, benchMinMessages)
}

// memoryPhase sends memMessages unsigned messages and measures the live
// heap after a GC at a tenth of them and at the end: flat means no leak
// per message.
func (e *benchEnv) memoryPhase(ctx context.Context, r *benchResults) error {
	fl, stop, err := e.busFlow(ctx, false)
	if err != nil {
		return err
	}
	defer stop()
	heapMB := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	n := e.o.memMessages
	fl.onCount = func(i int) {
		switch i {
		case n / 10:
			r.heapEarlyMB = heapMB()
		case n:
			r.heapEndMB = heapMB()
		}
	}
	// A zero duration: exactly n messages, however long they take.
	_, err = e.runFlow(ctx, fl, 0, n)
	return err
}
