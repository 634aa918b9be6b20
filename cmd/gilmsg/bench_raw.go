package main

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/zsock"
)

// rawPhase is the baseline: pebbe/zmq4 alone, PUB to SUB, the same two
// frames as the unsigned phase's messages.
func (e *benchEnv) rawPhase(ctx context.Context, r *benchResults) error {
	res, body, err := e.rawFlow(ctx, 0)
	if err != nil {
		return err
	}
	r.bodyBytes = len(body)
	r.raw, r.cpuRaw = res.rate(), res.cpuPerMsg()
	r.rawRTT, err = e.rawRoundTrip(ctx, []byte(benchPrefix+"msg"), body)
	return err
}

// rawCappedPhase is the baseline with the queues the bus must have: each
// side's ZMQ_SNDHWM and ZMQ_RCVHWM the bus's per-subscriber cap (of
// max_message_size, zsock.FanoutHWM), and ZMQ_XPUB_NODROP, so that a
// send to a full subscriber waits for it, as the bus's does, instead of
// dropping. It refines the bound of the unsigned phase; raw ZeroMQ, with
// no cap, stays its headline bound.
func (e *benchEnv) rawCappedPhase(ctx context.Context, r *benchResults) error {
	r.rawCap = zsock.FanoutHWM(zsock.FromConfig(e.config(benchPublisher, nil)))
	res, _, err := e.rawFlow(ctx, r.rawCap)
	if err != nil {
		return err
	}
	r.rawCapped, r.cpuRawCapped = res.rate(), res.cpuPerMsg()
	return nil
}

// rawFlow runs a PUB→SUB flow of the unsigned phase's messages, each
// side's queue capped at hwm messages (0: no cap) with XPUB_NODROP when
// capped, and returns the body it sent.
func (e *benchEnv) rawFlow(ctx context.Context, hwm int) (flowResult, []byte, error) {
	now := time.Now()
	body, err := gilmsg.MarshalCanonical(map[string]any{
		"topic": benchPrefix + "msg", "msg": e.payload, "timestamp": now.Unix(),
		"msg_id": strconv.Itoa(now.Year()) + "-" + uuid.NewString(), "i": 1, "username": "bench",
	})
	if err != nil {
		return flowResult{}, nil, err
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		return flowResult{}, nil, err
	}
	defer zctx.Term()
	pub, sub, err := rawPairCapped(zctx, zctx, hwm)
	defer closeSockets(pub, sub)
	if err != nil {
		return flowResult{}, nil, err
	}
	topic, end := []byte(benchPrefix+"msg"), []byte(benchPrefix+"end")
	fl := flow{
		send: func(ctx context.Context, last bool) error {
			t, b := topic, body
			if last {
				t, b = end, nil
			}
			// Capped, a blocking send waits for room up to its
			// ZMQ_SNDTIMEO, then says EAGAIN: wait again.
			for {
				_, err := pub.SendBytes(t, zmq.SNDMORE)
				if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
					if err != nil {
						return err
					}
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			_, err := pub.SendBytes(b, 0)
			return err
		},
		recv: func(ctx context.Context) (flowKind, error) {
			for {
				frames, err := sub.RecvMessageBytes(0)
				if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
					if ctx.Err() != nil {
						return 0, ctx.Err()
					}
					continue
				}
				if err != nil {
					return 0, err
				}
				return classify(string(frames[0])), nil
			}
		},
	}
	res, err := e.runFlow(ctx, fl, e.o.duration, benchMinMessages)
	return res, body, err
}

func closeSockets(socks ...*zmq.Socket) {
	for _, s := range socks {
		if s != nil {
			s.Close()
		}
	}
}

// rawRoundTrip is the transport's share of a reliable publish's latency:
// a message and its echo, one at a time, between two ZeroMQ contexts (two
// processes' worth of I/O threads), as a message and its ACK travel.
func (e *benchEnv) rawRoundTrip(ctx context.Context, topic, body []byte) (latencies, error) {
	return e.rawExchange(ctx, topic,
		func() ([]byte, error) { return body, nil },
		func(msg []byte) ([]byte, error) { return msg, nil },
		func([]byte) error { return nil })
}

// rawExchange times a message and its answer, one at a time, between two
// ZeroMQ contexts with pebbe/zmq4 alone, on a topic classify reads as
// data: send makes the message's body, answer the answer's from the
// body received, and done takes the answer received.
func (e *benchEnv) rawExchange(ctx context.Context, topic []byte, send func() ([]byte, error),
	answer func(msg []byte) ([]byte, error), done func(answer []byte) error) (latencies, error) {
	var zctxs [2]*zmq.Context
	for i := range zctxs {
		zc, err := zmq.NewContext()
		if err != nil {
			return latencies{}, err
		}
		defer zc.Term()
		zctxs[i] = zc
	}
	apub, bsub, err := rawPair(zctxs[0], zctxs[1])
	defer closeSockets(apub, bsub)
	if err != nil {
		return latencies{}, err
	}
	bpub, asub, err := rawPair(zctxs[1], zctxs[0])
	defer closeSockets(bpub, asub)
	if err != nil {
		return latencies{}, err
	}
	var stop atomic.Bool
	echoed := make(chan error, 1)
	go func() {
		for !stop.Load() {
			frames, err := bsub.RecvMessageBytes(0)
			if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
				continue
			}
			if err == nil && len(frames) == 2 && classify(string(frames[0])) == flowData {
				frames[1], err = answer(frames[1])
			}
			if err == nil {
				_, err = bpub.SendMessage(frames)
			}
			if err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()
	var samples []time.Duration
	err = func() error {
		for start := time.Now(); len(samples) < benchMinSamples || time.Since(start) < e.o.duration/2; {
			t0 := time.Now()
			body, err := send()
			if err != nil {
				return err
			}
			if _, err := apub.SendMessage(topic, body); err != nil {
				return err
			}
			// Probes from the setup may still come back: wait for the
			// message itself.
			var frames [][]byte
			for {
				frames, err = asub.RecvMessageBytes(0)
				if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if time.Since(t0) > benchGrace {
						return errors.New("no echo")
					}
					continue
				}
				if err != nil {
					return err
				}
				if len(frames) == 2 && classify(string(frames[0])) == flowData {
					break
				}
			}
			if err := done(frames[1]); err != nil {
				return err
			}
			samples = append(samples, time.Since(t0))
		}
		return nil
	}()
	stop.Store(true)
	if eerr := <-echoed; err == nil {
		err = eerr
	}
	if err != nil {
		return latencies{}, err
	}
	return summarize(samples), nil
}

// rawPair makes a PUB bound on loopback and a SUB connected to it, and
// waits until a probe gets through.
// sendLinger is the linger of the sockets the bench makes itself that send
// messages: never 0, which lets libzmq abort the process when a peer closes
// at the same moment as a socket with half a message queued for it (see
// minSendLingerMS in the gilmsg package).
const sendLinger = 100 * time.Millisecond

func rawPair(pubCtx, subCtx *zmq.Context) (pub, sub *zmq.Socket, err error) {
	return rawPairCapped(pubCtx, subCtx, 0)
}

// rawPairCapped is rawPair with each side's queue capped at hwm messages
// (0: no cap), and XPUB_NODROP on the PUB when capped: a send to a full
// subscriber then waits for room, up to a ZMQ_SNDTIMEO of 100 ms.
func rawPairCapped(pubCtx, subCtx *zmq.Context, hwm int) (pub, sub *zmq.Socket, err error) {
	if pub, err = pubCtx.NewSocket(zmq.PUB); err != nil {
		return nil, nil, err
	}
	if sub, err = subCtx.NewSocket(zmq.SUB); err != nil {
		return pub, nil, err
	}
	if err := errors.Join(pub.SetLinger(sendLinger), sub.SetLinger(0)); err != nil {
		return pub, sub, err
	}
	for _, s := range []*zmq.Socket{pub, sub} {
		if err := errors.Join(s.SetSndhwm(hwm), s.SetRcvhwm(hwm)); err != nil {
			return pub, sub, err
		}
	}
	if hwm > 0 {
		if err := errors.Join(pub.SetXpubNodrop(true), pub.SetSndtimeo(100*time.Millisecond)); err != nil {
			return pub, sub, err
		}
	}
	// The receiver checks its context this often while nothing arrives.
	if err := sub.SetRcvtimeo(100 * time.Millisecond); err != nil {
		return pub, sub, err
	}
	if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
		return pub, sub, err
	}
	ep, err := pub.GetLastEndpoint()
	if err != nil {
		return pub, sub, err
	}
	if err := errors.Join(sub.SetSubscribe(""), sub.Connect(ep)); err != nil {
		return pub, sub, err
	}
	poller := zmq.NewPoller()
	poller.Add(sub, zmq.POLLIN)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := pub.SendMessage("probe", ""); err != nil && zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
			return pub, sub, err
		}
		if polled, _ := poller.Poll(10 * time.Millisecond); len(polled) > 0 {
			return pub, sub, nil
		}
		if time.Now().After(deadline) {
			return pub, sub, errors.New("the SUB socket never connected")
		}
	}
}
