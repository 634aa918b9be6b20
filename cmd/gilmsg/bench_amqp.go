package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	zmq "github.com/pebbe/zmq4"
	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/amqpbridge"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// The AMQP bridge's bench (gilmsg bench --amqp-url URL): each direction
// of the bridge against raw amqp091-go publishing with confirms to the
// same broker, in the same run.
const (
	benchBridge      = "bench-bridge"
	benchAMQPTopic   = "org.example.dev.gilmsg-bench.amqp"
	benchAMQPMaxMsgs = 5000 // the bus→broker feed is signed beforehand
)

type amqpBenchResults struct {
	cores, keyBits, messages, window int

	raw      float64 // msg/s: amqp091-go, confirms, same window
	rawIn    float64 // msg/s: amqp091-go consuming and acking, same window (broker→bus's own direction)
	zmqAMQP  float64 // msg/s: signed bus messages validated, published, confirmed
	amqpZmq  float64 // msg/s: deliveries signed, published on the bus, received validated, acked
	signRate float64 // RSA signs per second, one goroutine
}

func runBenchAMQP(ctx context.Context, stdout, stderr io.Writer, o benchOptions) error {
	prog := newBenchProgress(stderr, 6)
	defer prog.finish()
	prog.phase("throwaway PKI")
	dir, err := os.MkdirTemp("", "gilmsg-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pki, err := devpki.New(dir, devpki.Options{Hosts: []string{benchPublisher, benchBridge}, KeyBits: o.keyBits})
	if err != nil {
		return err
	}
	bc := amqpbridge.DefaultConfig(benchBridge)
	bc.URL = o.amqpURL
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	bc.PublishExchange = "gilmsg-bench.zmq." + suffix
	bc.ConsumeExchange = "gilmsg-bench.amqp." + suffix
	bc.Queue = "gilmsg-bench.bridge." + suffix
	if err := bc.Validate(); err != nil {
		return err
	}
	conn, err := amqp.Dial(bc.URL)
	if err != nil {
		return fmt.Errorf("bench: broker %s: %w", amqpbridge.RedactURL(bc.URL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	// The queues are the bench's own and go when it ends.
	defer func() {
		for _, q := range []string{bc.Queue, "gilmsg-bench.raw." + suffix, "gilmsg-bench.sink." + suffix, "gilmsg-bench.rawin." + suffix} {
			ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{bc.PublishExchange, bc.ConsumeExchange, "gilmsg-bench.raw." + suffix} {
			ch.ExchangeDelete(x, false, false)
		}
	}()
	r := &amqpBenchResults{cores: runtime.GOMAXPROCS(0), keyBits: o.keyBits, window: bc.Window}
	// What a fedora-messaging publisher sends: the bridge's form without
	// its loop-guard header.
	pub, err := amqpbridge.ToAMQP(mustEnvelope(benchPayload()))
	if err != nil {
		return err
	}
	delete(pub.Headers, amqpbridge.OriginHeader)

	prog.phase("raw amqp091-go publish with confirms")
	rawEx, rawQ := "gilmsg-bench.raw."+suffix, "gilmsg-bench.raw."+suffix
	if err := declareSink(ch, rawEx, rawQ); err != nil {
		return err
	}
	var n int
	var elapsed time.Duration
	err = inPhase(ctx, "amqp_raw", func(ctx context.Context) (err error) {
		n, elapsed, err = rawConfirmed(ctx, conn, rawEx, pub, bc.Window, o.duration, 0, prog)
		return err
	})
	if err != nil {
		return err
	}
	r.raw = float64(n) / elapsed.Seconds()
	r.messages = max(min(n, benchAMQPMaxMsgs), benchMinMessages)

	prog.phase("RSA sign, one goroutine")
	signer, err := gilmsg.LoadSigner(pki.Dir, benchPublisher)
	if err != nil {
		return err
	}
	feed, signRate, err := signFeed(signer, r.messages)
	if err != nil {
		return err
	}
	r.signRate = signRate

	prog.phase(fmt.Sprintf("bridge zmq→amqp, %d messages", r.messages))
	if err := inPhase(ctx, "zmq_to_amqp", func(ctx context.Context) (err error) {
		r.zmqAMQP, err = benchZmqToAMQP(ctx, pki, bc, ch, "gilmsg-bench.sink."+suffix, feed, prog)
		return err
	}); err != nil {
		return fmt.Errorf("bench: zmq→amqp: %w", err)
	}
	prog.phase(fmt.Sprintf("raw amqp091-go consume, %d messages", r.messages))
	if err := inPhase(ctx, "amqp_raw_consume", func(ctx context.Context) (err error) {
		r.rawIn, err = rawConsumed(ctx, conn, "gilmsg-bench.rawin."+suffix, pub, bc.Window, r.messages)
		return err
	}); err != nil {
		return fmt.Errorf("bench: raw consume: %w", err)
	}
	prog.phase(fmt.Sprintf("bridge amqp→zmq, %d messages", r.messages))
	if err := inPhase(ctx, "amqp_to_zmq", func(ctx context.Context) (err error) {
		r.amqpZmq, err = benchAMQPToZmq(ctx, pki, bc, conn, pub, r.messages, prog)
		return err
	}); err != nil {
		return fmt.Errorf("bench: amqp→zmq: %w", err)
	}
	prog.finish()
	r.writeTable(stdout)
	if o.json {
		line, err := json.Marshal(map[string]float64{
			"amqp_raw_confirmed_msgs_per_s": r.raw,
			"amqp_zmq_to_amqp_msgs_per_s":   r.zmqAMQP,
			"amqp_amqp_to_zmq_msgs_per_s":   r.amqpZmq,
			"amqp_zmq_to_amqp_vs_raw":       r.zmqAMQP / r.raw,
			"amqp_amqp_to_zmq_vs_raw":       r.amqpZmq / r.raw,
			"bridge_to_bus_vs_raw":          r.amqpZmq / r.raw, // the name for it
			"amqp_raw_consumed_msgs_per_s":  r.rawIn,
			"bridge_to_bus_vs_raw_consume":  r.amqpZmq / r.rawIn,
			"amqp_amqp_to_zmq_vs_sign":      r.amqpZmq / r.signBound(),
			"rsa_sign_per_s":                r.signRate,
			"amqp_messages":                 float64(r.messages),
			"cores":                         float64(r.cores),
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(line))
	}
	return nil
}

// signBound is what amqp→zmq could do if signing were all it did: one
// signature per message, on every core (it has no recipients, so it
// signs the deliveries in hand on all of them).
func (r *amqpBenchResults) signBound() float64 {
	return r.signRate * float64(r.cores)
}

func (r *amqpBenchResults) writeTable(w io.Writer) {
	fmt.Fprintf(w, "gilmsg bench --amqp-url: %d cores, %d-bit RSA, %s; %d messages per bridge phase, window %d, amqp-to-zmq signing on every core\n\n",
		r.cores, r.keyBits, runtime.Version(), r.messages, r.window)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, cols[0]+"\t"+cols[1]+"\t"+cols[2]) }
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	row("phase", "result", "against its bound (target)")
	row("raw amqp091-go, confirms", fmt.Sprintf("%.0f msg/s", r.raw), "persistent, to a durable queue")
	row("bridge zmq→amqp", fmt.Sprintf("%.0f msg/s", r.zmqAMQP),
		fmt.Sprintf("%.2f × raw (≥ 0.5) %s", r.zmqAMQP/r.raw, verdict(r.zmqAMQP/r.raw >= 0.5)))
	row("raw amqp091-go, consume", fmt.Sprintf("%.0f msg/s", r.rawIn), "a full queue, same window, acks as the bridge's")
	row("bridge amqp→zmq", fmt.Sprintf("%.0f msg/s", r.amqpZmq),
		fmt.Sprintf("%.2f × raw (≥ 0.5) %s; %.2f × raw consume; %.2f × what signing allows (%.0f/s)",
			r.amqpZmq/r.raw, verdict(r.amqpZmq/r.raw >= 0.5), r.amqpZmq/r.rawIn, r.amqpZmq/r.signBound(), r.signBound()))
	tw.Flush()
}

func mustEnvelope(msg map[string]any) *gilmsg.Envelope {
	body, err := gilmsg.MarshalCanonical(map[string]any{
		"topic": benchAMQPTopic, "msg": msg, "msg_id": "2026-bench", "timestamp": time.Now().Unix(), "i": 1, "username": "bench",
	})
	if err != nil {
		panic(err)
	}
	env, err := gilmsg.ParseEnvelope(body)
	if err != nil {
		panic(err)
	}
	return env
}

func declareSink(ch *amqp.Channel, exchange, queue string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return err
	}
	return ch.QueueBind(queue, "#", exchange, false, nil)
}

// rawConfirmed publishes count messages, or for d when count is 0, on a
// channel of its own, keeping up to window publishes unconfirmed, as the
// bridge does, and returns how many the broker confirmed and how long
// that took.
func rawConfirmed(ctx context.Context, conn *amqp.Connection, exchange string, p amqp.Publishing, window int, d time.Duration, count int, prog *benchProgress) (int, time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, 0, err
	}
	var inflight []*amqp.DeferredConfirmation
	start := time.Now()
	n := 0
	wait := func(dc *amqp.DeferredConfirmation) error {
		if !dc.Wait() {
			return errors.New("broker nacked a publish")
		}
		n++
		prog.count.Add(1)
		return nil
	}
	more := func(i int) bool {
		if count > 0 {
			return i < count
		}
		return time.Since(start) < d || i < benchMinMessages
	}
	for i := 0; more(i); i++ {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		if len(inflight) >= window {
			if err := wait(inflight[0]); err != nil {
				return 0, 0, err
			}
			inflight = inflight[1:]
		}
		p.MessageId = "raw-" + strconv.Itoa(i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, benchAMQPTopic, false, false, p)
		if err != nil {
			return 0, 0, err
		}
		inflight = append(inflight, dc)
	}
	for _, dc := range inflight {
		if err := wait(dc); err != nil {
			return 0, 0, err
		}
	}
	return n, time.Since(start), nil
}

// rawConsumed fills queue with n messages, then times amqp091-go
// consuming them with the window as its prefetch, acking several at once
// as the bridge does (every window/8 and the last): the broker→bus
// direction without the bridge, as rawConfirmed is bus→broker's.
func rawConsumed(ctx context.Context, conn *amqp.Connection, queue string, p amqp.Publishing, window, n int) (float64, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := declareSink(ch, queue, queue); err != nil {
		return 0, err
	}
	if _, _, err := rawConfirmed(ctx, conn, queue, p, window, 0, n, &benchProgress{}); err != nil {
		return 0, err
	}
	if err := ch.Qos(window, 0, false); err != nil {
		return 0, err
	}
	// Consume, not ConsumeWithContext: that one's goroutine cancels the
	// consumer when its ctx ends, which raced the channel's Close below
	// and sent basic.cancel on a channel the broker had closed. The
	// broker then closed the whole connection (504, "expected
	// 'channel.open'"), which the next phase shares.
	timeout := time.NewTimer(benchGrace)
	defer timeout.Stop()
	start := time.Now()
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	every := max(window/8, 1)
	for got := 0; got < n; {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return 0, fmt.Errorf("%d of %d messages consumed: the channel closed", got, n)
			}
			got++
			if got%every == 0 || got == n {
				if err := d.Ack(true); err != nil {
					return 0, err
				}
			}
		case <-timeout.C:
			return 0, fmt.Errorf("%d of %d messages consumed in %v", got, n, benchGrace)
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d messages consumed: %w", got, n, ctx.Err())
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// signFeed signs n bus messages, for the zmq→amqp phase to send: made
// beforehand so that the publisher's signing is not what is measured. It
// signs them as benchPublisher (on every core) and
// measures one goroutine's signing rate on the way.
func signFeed(s *gilmsg.Signer, n int) ([][2][]byte, float64, error) {
	out := make([][2][]byte, n)
	year := strconv.Itoa(time.Now().Year())
	sign := func(i int) error {
		fields := map[string]any{
			"topic": benchAMQPTopic, "msg": benchPayload(), "msg_id": year + "-bench-" + strconv.Itoa(i),
			"timestamp": json.Number(strconv.FormatInt(time.Now().Unix(), 10)), "i": json.Number(strconv.Itoa(i + 1)),
			"username": "bench",
		}
		if err := s.Sign(fields); err != nil {
			return err
		}
		body, err := gilmsg.MarshalCanonical(fields)
		out[i] = [2][]byte{[]byte(benchAMQPTopic), body}
		return err
	}
	start := time.Now()
	first := min(n, 50)
	for i := range first {
		if err := sign(i); err != nil {
			return nil, 0, err
		}
	}
	rate := float64(first) / time.Since(start).Seconds()
	var wg sync.WaitGroup
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := first + w; i < n; i += runtime.GOMAXPROCS(0) {
				if err := sign(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return out, rate, <-errs
}

// benchZmqToAMQP sends the signed feed from a raw ZeroMQ publisher to a
// zmq-to-amqp bridge and times it until the broker has confirmed all.
func benchZmqToAMQP(ctx context.Context, pki *devpki.PKI, bc amqpbridge.Config, ch *amqp.Channel, sink string, feed [][2][]byte, prog *benchProgress) (float64, error) {
	n := len(feed)
	sock, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		return 0, err
	}
	defer sock.Close()
	sock.SetLinger(sendLinger)
	sock.SetSndhwm(0)
	if err := sock.Bind("tcp://127.0.0.1:*"); err != nil {
		return 0, err
	}
	ep, _ := sock.GetLastEndpoint()
	cfg := pki.Config()
	cfg.Name = benchBridge
	cfg.Endpoints = map[string][]string{benchBridge: {"tcp://127.0.0.1:*"}, benchPublisher: {ep}}
	cfg.ZMQLinger = 100
	bus, err := gilmsg.New(cfg)
	if err != nil {
		return 0, err
	}
	defer bus.Close()
	if err := declareSink(ch, bc.PublishExchange, sink); err != nil {
		return 0, err
	}
	z, err := amqpbridge.NewZmqToAMQP(bus, bc)
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- z.Run(rctx) }()
	defer func() { cancel(); <-done }()
	sock.SetRcvtimeo(30 * time.Second)
	if _, err := sock.RecvBytes(0); err != nil { // the bridge's subscription
		return 0, fmt.Errorf("no subscription from the bridge: %w", err)
	}
	if err := waitUntil(ctx, z.Connected); err != nil {
		return 0, err
	}
	start := time.Now()
	for _, m := range feed {
		if _, err := sock.SendMessage(m[0], m[1]); err != nil {
			return 0, err
		}
	}
	if err := waitUntil(ctx, func() bool {
		f := z.Stats().Forwarded
		prog.count.Store(int64(f))
		return f >= uint64(n)
	}); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// benchAMQPToZmq fills the bridge's queue with n messages, then times an
// amqp-to-zmq bridge until a validating subscriber has them all.
func benchAMQPToZmq(ctx context.Context, pki *devpki.PKI, bc amqpbridge.Config, conn *amqp.Connection, p amqp.Publishing, n int, prog *benchProgress) (float64, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := declareSink(ch, bc.ConsumeExchange, bc.Queue); err != nil {
		return 0, err
	}
	if _, _, err := rawConfirmed(ctx, conn, bc.ConsumeExchange, p, bc.Window, 0, n, &benchProgress{}); err != nil {
		return 0, err
	}

	cfg := pki.Config()
	cfg.Name = benchBridge
	cfg.Endpoints = map[string][]string{benchBridge: {"tcp://127.0.0.1:*"}}
	cfg.ZMQLinger = 100
	bus, err := gilmsg.New(cfg)
	if err != nil {
		return 0, err
	}
	defer bus.Close()
	subCfg := pki.Config()
	subCfg.Endpoints = map[string][]string{benchBridge: {bus.Endpoint()}}
	sub, err := gilmsg.New(subCfg)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	s, err := sub.Subscribe(ctx, "")
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := bus.WaitSubscribers(ctx, benchAMQPTopic, 1); err != nil {
		return 0, err
	}
	a, err := amqpbridge.NewAMQPToZmq(bus, bc)
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	defer func() { cancel(); <-done }()
	// The clock starts when the bridge begins to consume, as raw's starts
	// on a connection made before: the bridge's dial and declarations
	// (20-26 ms, about 1 % of the phase) are not what raw is timed on
	// either. It is the last time the bridge was seen not consuming yet,
	// so that it never starts late.
	start, deadline := time.Now(), time.Now().Add(benchGrace)
	for !a.Connected() {
		if start.After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("the bridge did not connect within %v", benchGrace)
		}
		start = time.Now()
		time.Sleep(100 * time.Microsecond)
	}
	for got := 0; got < n; {
		wctx, wcancel := context.WithTimeout(ctx, benchGrace)
		m, err := s.Next(wctx)
		wcancel()
		if err != nil {
			return 0, fmt.Errorf("after %d of %d messages: %w", got, n, err)
		}
		if m.Signer == benchBridge {
			got++
			prog.count.Store(int64(got))
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// waitUntil polls cond for up to benchGrace.
func waitUntil(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(benchGrace)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
