package gilmsg

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/rsasig"
	zmq "github.com/pebbe/zmq4"
)

// The end-to-end benchmarks of the hot paths, over loopback TCP with the
// shared 2048-bit test PKI. Read them against their bounds, measured in the
// same run: BenchmarkRawZMQPubSub (the transport alone, relay_test.go) for
// the unsigned path, BenchmarkRSASign and BenchmarkRSAVerify (one core) for
// the signed and reliable ones. `gilmsg bench` prints the same comparison
// as ratios.

const (
	e2ePublisher = "publisher01.example.org"
	e2eModname   = "bench"
	// e2eWindow bounds the messages in flight, so that a publisher faster
	// than its subscriber measures the subscriber's rate instead of
	// filling memory.
	e2eWindow = 4096
)

// e2ePayload is a typical fedmsg payload: with its envelope, an unsigned
// body of about 1 KB, like BenchmarkRawZMQPubSub's.
func e2ePayload() map[string]any {
	return map[string]any{
		"agent": "gilmsg-bench",
		"build": map[string]any{
			"id": 2412345, "name": "gilmsg-go", "version": "1.4.2", "release": "1.fc41",
			"epoch": nil, "owner": "bench", "state": 1, "task_id": 123456789,
			"tags": []any{"f41-updates-candidate", "f41-signing-pending"},
		},
		"instance":   "primary",
		"request_id": "c0ffee00-1234-4abc-9def-0123456789ab",
		"url":        "https://koji.example.org/koji/buildinfo?buildID=2412345",
		"changelog":  strings.Repeat("- Rebuilt for the benchmark; nothing changed. ", 12),
	}
}

// e2eConfig is the shared PKI's config for a bus named name ("" only
// subscribes), bound on a free loopback port, knowing endpoints.
func e2eConfig(b *testing.B, name string, endpoints map[string][]string) *Config {
	b.Helper()
	cfg := testPKI(b).Config()
	cfg.Name = name
	cfg.Endpoints = map[string][]string{}
	for k, v := range endpoints {
		cfg.Endpoints[k] = v
	}
	if name != "" {
		cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
	}
	cfg.ZMQLinger = 100
	return cfg
}

func e2eBus(b *testing.B, cfg *Config) *Bus {
	b.Helper()
	bus, err := New(cfg, WithModname(e2eModname))
	if err != nil {
		b.Fatalf("New(%q): %v", cfg.Name, err)
	}
	b.Cleanup(func() { bus.Close() })
	return bus
}

func e2eCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	return ctx
}

// benchFlow times publish→tail: a goroutine publishes (sign: signed) as
// fast as the window allows, and each iteration is one message received
// by a subscription that validates or not.
func benchFlow(b *testing.B, sign, validate bool) { benchFlowBatch(b, sign, validate, 1) }

// benchFlowBatch is benchFlow publishing batch messages at a time, with
// PublishBatch when batch > 1.
func benchFlowBatch(b *testing.B, sign, validate bool, batch int) {
	ctx := e2eCtx(b)
	pcfg := e2eConfig(b, e2ePublisher, nil)
	pcfg.SignMessages = sign
	pub := e2eBus(b, pcfg)
	tail := e2eBus(b, e2eConfig(b, "", nil))
	opts := []SubscribeOption{WithEndpoints(pub.Endpoint())}
	if !validate {
		opts = append(opts, WithoutValidation())
	}
	sub, err := tail.Subscribe(ctx, "org.example.dev."+e2eModname+".", opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	if err := pub.WaitSubscribers(ctx, "msg", 1); err != nil {
		b.Fatal(err)
	}
	want := pub.fullTopic("msg", "")
	payload := e2ePayload()

	msgs := make([]BatchMessage, batch)
	for i := range msgs {
		msgs[i] = BatchMessage{Topic: "msg", Msg: payload}
	}
	window := make(chan struct{}, e2eWindow)
	pctx, stop := context.WithCancel(ctx)
	published := make(chan error, 1)
	go func() {
		for {
			for range batch {
				select {
				case window <- struct{}{}:
				case <-pctx.Done():
					published <- nil
					return
				}
			}
			var err error
			if batch == 1 {
				_, err = pub.Publish(pctx, "msg", payload)
			} else {
				_, err = pub.PublishBatch(pctx, msgs)
			}
			if err != nil {
				published <- err
				return
			}
		}
	}()
	defer func() {
		stop()
		if err := <-published; err != nil && pctx.Err() == nil {
			b.Error(err)
		}
	}()
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if m.Topic != want {
				continue
			}
			if validate && m.Signer != e2ePublisher {
				b.Fatalf("signer %q, want %q", m.Signer, e2ePublisher)
			}
			<-window
			break
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cpu.report()
}

// startCPU starts counting the process's CPU time (user and system, every
// thread: both ends of the bus and libzmq's), reported per op by report:
// steadier than a rate on a shared machine.
func startCPU(b *testing.B) cpuMeter { return cpuMeter{b, processCPU(b)} }

type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func (c cpuMeter) report() {
	c.b.ReportMetric(float64(processCPU(c.b)-c.start)/float64(time.Microsecond)/float64(c.b.N), "cpu-us/op")
}

// reportCores reports the cores the process kept busy, on average: a
// path held to one goroutine stays at or under 1 whatever the rate.
func (c cpuMeter) reportCores() {
	c.b.ReportMetric(float64(processCPU(c.b)-c.start)/float64(c.b.Elapsed()), "cores")
}

// BenchmarkPublishUnsigned is publish→tail without crypto: compare with
// BenchmarkRawZMQPubSub.
func BenchmarkPublishUnsigned(b *testing.B) { benchFlow(b, false, false) }

// BenchmarkPublishSigned signs every message and skips validation: bounded
// by BenchmarkRSASign.
func BenchmarkPublishSigned(b *testing.B) { benchFlow(b, true, false) }

// BenchmarkPublishBatchSigned is BenchmarkPublishSigned publishing 64
// messages at a time with PublishBatch, which signs them on every core:
// bounded by BenchmarkRSASign times the cores.
func BenchmarkPublishBatchSigned(b *testing.B) { benchFlowBatch(b, true, false, 64) }

// BenchmarkPublishTailSignedValidated signs and validates every message.
func BenchmarkPublishTailSignedValidated(b *testing.B) { benchFlow(b, true, true) }

// reliableRig starts a publisher and n consumers that tail it (and so ACK
// its gilmsg messages), and returns the publisher and the recipients.
func reliableRig(b *testing.B, n int) (*Bus, []string) {
	b.Helper()
	ctx := e2eCtx(b)
	names := testPKIHosts[1 : 1+n]
	known := map[string][]string{}
	consumers := make([]*Bus, n)
	for i, name := range names {
		consumers[i] = e2eBus(b, e2eConfig(b, name, nil))
		known[name] = []string{consumers[i].Endpoint()}
	}
	pcfg := e2eConfig(b, e2ePublisher, known)
	pub := e2eBus(b, pcfg)
	// The ACK listener connects to every endpoint in the config.
	pcfg.Endpoints[e2ePublisher] = []string{pub.Endpoint()}
	var wg sync.WaitGroup
	tctx, cancel := context.WithCancel(ctx)
	for _, c := range consumers {
		sub, err := c.Subscribe(ctx, "org.example.dev."+e2eModname+".", WithEndpoints(pub.Endpoint()))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Close()
			for {
				if _, err := sub.Next(tctx); err != nil {
					return
				}
			}
		}()
	}
	b.Cleanup(func() { cancel(); wg.Wait() })
	if err := pub.WaitSubscribers(ctx, "reliable", n); err != nil {
		b.Fatal(err)
	}
	// Start the ACK listener, and warm the caches, before timing.
	for range 3 {
		if _, err := pub.Publish(ctx, "reliable", nil, WithRecipients(names...), WithAckTimeout(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	return pub, names
}

// BenchmarkReliablePublish times one reliable publish at a time, waiting
// for the ACKs of 1 and of 3 recipients, and reports the latency
// percentiles. Compare p50 with the floor: 2 × BenchmarkRSASign + 2 ×
// BenchmarkRSAVerify.
func BenchmarkReliablePublish(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			pub, names := reliableRig(b, n)
			ctx := e2eCtx(b)
			payload := e2ePayload()
			var lat []time.Duration
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				start := time.Now()
				if _, err := pub.Publish(ctx, "reliable", payload, WithRecipients(names...), WithAckTimeout(10*time.Second)); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(e2ePercentileMS(lat, 0.50), "p50-ms")
			b.ReportMetric(e2ePercentileMS(lat, 0.99), "p99-ms")
			cpu.report()
		})
	}
}

// BenchmarkReliablePublishParallel keeps 8 reliable publishes per core in
// flight to one recipient. The bound: cores × BenchmarkRSASign / 2 (the
// publisher's signature and the ACK's).
func BenchmarkReliablePublishParallel(b *testing.B) {
	pub, names := reliableRig(b, 1)
	ctx := e2eCtx(b)
	payload := e2ePayload()
	resends := pub.Stats().Resends
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pub.Publish(ctx, "reliable", payload, WithRecipients(names...), WithAckTimeout(10*time.Second)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(pub.Stats().Resends-resends)/float64(b.N), "resends/op")
	cpu.report()
}

// BenchmarkRunConsumersReliable is a hub that many publishers wait on:
// one RunConsumers, ACKing before or after its consumer, with 16
// reliable publishes in flight to it. The hub verifies each message and
// signs its ACK; the ACKs are signed off the runner's goroutine, on
// every core (Message.AckAsync).
func BenchmarkRunConsumersReliable(b *testing.B) {
	const inFlight = 16
	for _, tc := range []struct {
		name string
		opts []RunOption
	}{{"ack=before", nil}, {"ack=after", []RunOption{WithAckAfterConsume()}}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := e2eCtx(b)
			hubName := testPKIHosts[1]
			hub := e2eBus(b, e2eConfig(b, hubName, nil))
			pcfg := e2eConfig(b, e2ePublisher, map[string][]string{hubName: {hub.Endpoint()}})
			pub := e2eBus(b, pcfg)
			pcfg.Endpoints[e2ePublisher] = []string{pub.Endpoint()}
			noop := ConsumerFunc("org.example.dev."+e2eModname+".", func(context.Context, *Message) error { return nil })
			rctx, cancel := context.WithCancel(ctx)
			ran := make(chan error, 1)
			go func() {
				ran <- hub.RunConsumers(rctx, []Consumer{noop}, append(tc.opts, WithSubscribeOptions(WithEndpoints(pub.Endpoint())))...)
			}()
			b.Cleanup(func() { cancel(); <-ran })
			if err := pub.WaitSubscribers(ctx, "reliable", 1); err != nil {
				b.Fatal(err)
			}
			payload := e2ePayload()
			for range 3 { // the ACK listener, and warm caches
				if _, err := pub.Publish(ctx, "reliable", payload, WithRecipients(hubName), WithAckTimeout(10*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism((inFlight + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := pub.Publish(ctx, "reliable", payload, WithRecipients(hubName), WithAckTimeout(10*time.Second)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cpu.report()
		})
	}
}

// BenchmarkRunConsumersAcks is a hub's own ACK rate: a raw socket feeds
// RunConsumers unsigned gilmsg messages (validation off) as fast as the
// hub ACKs them, so that signing the ACKs is nearly all the work there
// is, and the feeder takes no core from the hub. Read it against
// BenchmarkRSASign: the runner signed each ACK itself, on one core,
// before AckAsync.
func BenchmarkRunConsumersAcks(b *testing.B) {
	const window, pool = 128, 512
	zctx, err := zmq.NewContext()
	if err != nil {
		b.Fatal(err)
	}
	feed, err := zctx.NewSocket(zmq.XPUB)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { feed.Close(); zctx.Term() })
	feed.SetLinger(0)
	if err := feed.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	addr, _ := feed.GetLastEndpoint()
	hub := e2eBus(b, e2eConfig(b, testPKIHosts[1], nil))
	topic := "org.example.dev." + e2eModname + ".acks"
	noop := ConsumerFunc(topic, func(context.Context, *Message) error { return nil })
	rctx, cancel := context.WithCancel(e2eCtx(b))
	ran := make(chan error, 1)
	go func() {
		ran <- hub.RunConsumers(rctx, []Consumer{noop},
			WithSubscribeOptions(WithEndpoints(addr), WithoutValidation(), WithDedupe(0)))
	}()
	b.Cleanup(func() { cancel(); <-ran })
	feed.SetRcvtimeo(20 * time.Second)
	if _, err := feed.RecvBytes(0); err != nil { // the hub's subscription
		b.Fatal(err)
	}
	bodies := make([][]byte, pool)
	for i := range bodies {
		bodies[i], err = MarshalCanonical(map[string]any{"topic": topic, "msg": e2ePayload(), "msg_id": fmt.Sprint("2026-hub-", i),
			"timestamp": 1700000000, "i": 1, "username": "bench", "gilmsg_version": ProtocolVersion})
		if err != nil {
			b.Fatal(err)
		}
	}
	acked := func() uint64 { return hub.Stats().AcksSent }
	// Sends i once fewer than window messages wait for their ACK.
	send := func(i int, base uint64) {
		for uint64(i)-(acked()-base) >= window {
			time.Sleep(100 * time.Microsecond)
		}
		if _, err := feed.SendMessage(topic, bodies[i%pool]); err != nil {
			b.Fatal(err)
		}
	}
	base := acked()
	for i := range 8 { // warm the signer and the caches
		send(i, base)
	}
	for acked()-base < 8 {
		time.Sleep(time.Millisecond)
	}
	base = acked()
	b.ResetTimer()
	cpu := startCPU(b)
	for i := range b.N {
		send(i, base)
	}
	for acked()-base < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cpu.report()
	cpu.reportCores()
}

// e2ePercentileMS is the nearest-rank percentile of sorted, in ms.
func e2ePercentileMS(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(max(int(float64(len(sorted))*q+0.999999)-1, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// rsaFloor returns the publisher's key and the canonical text of a typical
// reliable message, as the library signs it.
func rsaFloor(b *testing.B) (*rsa.PrivateKey, []byte) {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(testPKI(b).Dir, e2ePublisher+".key"))
	if err != nil {
		b.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		b.Fatal("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	key.Precompute()
	text, err := MarshalCanonical(map[string]any{
		"crypto": "x509", "topic": "org.example.dev.bench.reliable", "msg": e2ePayload(),
		"timestamp": time.Now().Unix(), "msg_id": "2025-c0ffee00-1234-4abc-9def-0123456789ab",
		"i": 1, "username": "bench", "gilmsg_version": ProtocolVersion,
	})
	if err != nil {
		b.Fatal(err)
	}
	return key, text
}

// BenchmarkRSASign is the floor of signing: SHA-1 and RSA PKCS#1 v1.5 with
// the bench's 2048-bit key, nothing else, through the build's backend
// (libcrypto; crypto/rsa with -tags gilmsg_purego).
func BenchmarkRSASign(b *testing.B) {
	key, text := rsaFloor(b)
	k := rsasig.NewPrivateKey(key)
	for b.Loop() {
		if _, err := k.SignSHA1(text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSAVerify is the floor of validating a message whose
// certificate chain is cached.
func BenchmarkRSAVerify(b *testing.B) {
	key, text := rsaFloor(b)
	k := rsasig.NewPrivateKey(key)
	sig, err := k.SignSHA1(text)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := k.Public().VerifySHA1(text, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishNoSubscriber is the publisher's side alone: envelope,
// encoding and the hand-off to the socket's goroutine, with nobody
// subscribed (the XPUB drops the message).
func BenchmarkPublishNoSubscriber(b *testing.B) {
	for _, sign := range []bool{false, true} {
		b.Run(fmt.Sprintf("signed=%v", sign), func(b *testing.B) {
			cfg := e2eConfig(b, e2ePublisher, nil)
			cfg.SignMessages = sign
			pub := e2eBus(b, cfg)
			ctx := e2eCtx(b)
			payload := e2ePayload()
			// The first publish waits out the bus's warm-up (post_init_sleep):
			// outside the loop, which would otherwise stop after it.
			if _, err := pub.Publish(ctx, "msg", payload); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pub.Publish(ctx, "msg", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseEnvelope is the subscriber's decoding of a typical body,
// unsigned and signed.
func BenchmarkParseEnvelope(b *testing.B) {
	for _, sign := range []bool{false, true} {
		b.Run(fmt.Sprintf("signed=%v", sign), func(b *testing.B) {
			fields := map[string]any{
				"topic": "org.example.dev.bench.msg", "msg": e2ePayload(), "timestamp": time.Now().Unix(),
				"msg_id": "2025-c0ffee00-1234-4abc-9def-0123456789ab", "i": 1, "username": "bench",
			}
			if sign {
				s, err := LoadSigner(testPKI(b).Dir, e2ePublisher)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Sign(fields); err != nil {
					b.Fatal(err)
				}
			}
			body, err := MarshalCanonical(fields)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseEnvelope(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseEnvelopeMsg is BenchmarkParseEnvelope/signed=false for an
// application that reads the payload: the parse and the decode of msg.
func BenchmarkParseEnvelopeMsg(b *testing.B) {
	body, err := MarshalCanonical(map[string]any{
		"topic": "org.example.dev.bench.msg", "msg": e2ePayload(), "timestamp": time.Now().Unix(),
		"msg_id": "2025-c0ffee00-1234-4abc-9def-0123456789ab", "i": 1, "username": "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := ParseEnvelope(body)
		if err != nil || e.Msg() == nil {
			b.Fatal(err)
		}
	}
}
