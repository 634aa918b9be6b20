package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/gilmsg/gilmsg-go"
)

// The endpoints phase: one subscription over N endpoints, each of which
// sends its share of a burst at once, as a bus with hundreds of
// publishers sees after a restart. The publishers are XPUB sockets of one
// raw ZeroMQ context in this process (N buses would be N contexts and 2N
// threads), so the CPU per message counts their sends too; raw ZeroMQ's
// cost per message (the raw phase) bounds that share.

// benchMinPerEndpoint is what each endpoint sends at least, however
// small the burst (--endpoints-burst, spread evenly over the endpoints).
const benchMinPerEndpoint = 20

// endpointsResult is one N of the endpoints phase.
type endpointsResult struct {
	n          int
	rate       float64 // msgs/s, first send to last receive
	cpuUSPerMs float64 // process CPU (user + system) per message, µs
	threads    int     // OS threads of the process with the subscription up
}

func (e *benchEnv) endpointsPhase(ctx context.Context, r *benchResults) error {
	for _, n := range e.o.endpoints {
		res, err := e.endpointsRun(ctx, n)
		if err != nil {
			return fmt.Errorf("%d endpoints: %w", n, err)
		}
		r.endpoints = append(r.endpoints, res)
	}
	return nil
}

func (e *benchEnv) endpointsRun(ctx context.Context, n int) (res endpointsResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, benchGrace)
	defer cancel()
	zctx, err := zmq.NewContext()
	if err != nil {
		return res, err
	}
	defer zctx.Term()
	if err := zctx.SetMaxSockets(n + 64); err != nil {
		return res, err
	}
	pubs := make([]*zmq.Socket, 0, n)
	defer func() { closeSockets(pubs...) }()
	addrs := make([]string, n)
	for i := range n {
		p, err := zctx.NewSocket(zmq.XPUB)
		if err != nil {
			return res, err
		}
		pubs = append(pubs, p)
		p.SetLinger(sendLinger)
		p.SetSndhwm(0)
		p.SetRcvtimeo(benchGrace)
		if err := p.Bind("tcp://127.0.0.1:*"); err != nil {
			return res, err
		}
		if addrs[i], err = p.GetLastEndpoint(); err != nil {
			return res, err
		}
	}
	bus, err := e.newBus(e.config("", nil))
	if err != nil {
		return res, err
	}
	defer bus.Close()
	sub, err := bus.Subscribe(ctx, benchPrefix, gilmsg.WithEndpoints(addrs...), gilmsg.WithoutValidation())
	if err != nil {
		return res, err
	}
	defer sub.Close()
	// Each XPUB says when it has applied the subscription: no message of
	// the burst is sent to a publisher that would drop it.
	for i, p := range pubs {
		if frame, err := p.RecvBytes(0); err != nil || len(frame) == 0 || frame[0] != 1 {
			return res, fmt.Errorf("endpoint %d never saw the subscription (%v)", i, err)
		}
	}
	res.n = n
	res.threads = procThreads()
	topic := benchPrefix + "msg"
	// Dedupe is by msg_id, so each message gets its own: the round is
	// written over the placeholder before each send.
	const placeholder = "RRRRRR"
	bodies := make([][]byte, n)
	at := make([]int, n)
	for i := range bodies {
		if bodies[i], err = gilmsg.MarshalCanonical(map[string]any{
			"topic": topic, "msg": e.payload, "i": 1, "timestamp": time.Now().Unix(),
			"msg_id": fmt.Sprintf("bench-%06d-%s", i, placeholder), "username": "bench",
		}); err != nil {
			return res, err
		}
		at[i] = bytes.Index(bodies[i], []byte(placeholder))
	}
	per := max(benchMinPerEndpoint, e.o.burst/n)
	total := per * n
	sent := make(chan error, 1)
	cpu0 := processCPU()
	start := time.Now()
	go func() {
		// Round after round, one message from each endpoint: the burst
		// arrives interleaved, as it would from many processes.
		for round := range per {
			for i, p := range pubs {
				d := bodies[i][at[i] : at[i]+len(placeholder)]
				for k, r := len(d)-1, round; k >= 0; k, r = k-1, r/10 {
					d[k] = byte('0' + r%10)
				}
				if _, err := p.SendMessage(topic, bodies[i]); err != nil {
					sent <- err
					return
				}
			}
		}
		sent <- nil
	}()
	for got := 0; got < total; got++ {
		m, err := sub.Next(ctx)
		if err != nil {
			return res, fmt.Errorf("%d of %d messages: %w", got, total, err)
		}
		if m.Topic != topic {
			return res, fmt.Errorf("unexpected topic %q", m.Topic)
		}
		e.prog.count.Store(int64(got + 1))
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if err := <-sent; err != nil {
		return res, err
	}
	res.rate = float64(total) / elapsed.Seconds()
	res.cpuUSPerMs = float64(cpu.Microseconds()) / float64(total)
	return res, nil
}

// processCPU is the user and system time of the whole process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processSwitches is how many times the process's threads have left their
// core so far, waiting (voluntary) or preempted: each wake-up of a thread
// that sleeps again counts one.
func processSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}

// procThreads is the OS thread count of this process, 0 if unknown.
func procThreads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
