package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	zmq "github.com/pebbe/zmq4"
	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/rsasig"
)

type benchOptions struct {
	quick       bool
	json        bool
	recipients  int
	duration    time.Duration
	concurrency int
	keyBits     int // hidden: tests use small keys
	memMessages int // hidden: tests use few
	endpoints   []int
	burst       int // hidden: tests use small bursts
	amqpURL     string
}

// newBenchCmd builds the command afresh so that tests get their own flags.
func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure gilmsg against raw ZeroMQ and the cost of its RSA, in one run",
		Long: `bench needs no configuration: it creates a throwaway CA in a temporary
directory and runs every bus in this process, over loopback TCP, so that
each number can be read against its bound measured in the same run:

  raw ZeroMQ PUB→SUB       the transport alone, same topic and body sizes
  publish→tail unsigned    fedmsg without crypto        (vs raw ZeroMQ)
  publish→tail signed      signed and validated         (vs one core's RSA signs)
  RSA sign, verify         SHA-1 PKCS#1 v1.5, one goroutine (the floor); one
                           per core at once around the concurrent phase
  gpg sign, verify         one goroutine, RSA and Ed25519 keys, as a bus does
  raw reliable             the same work with crypto/rsa and pebbe/zmq4 alone
  reliable publish         p50/p99, 1 and N recipients  (vs raw reliable)
  concurrent reliable      many goroutines, 1 recipient (vs 2 signs + 2 verifies
                           a message, on every core at once)
  memory                   peak RSS, allocations per message, heap after
                           GC at 10% and 100% of a long unsigned run
  endpoints                one subscription over N publishers (--endpoints,
                           default 50,200,500): burst rate, CPU µs per
                           message, OS threads

Throughput phases publish from one goroutine, with at most a few thousand
messages in flight, and count at the subscriber until all have arrived.
With --json the last line of the output is one JSON object holding every
number. Progress goes to stderr.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.quick && !cmd.Flags().Changed("duration") {
				o.duration = time.Second
			}
			switch {
			case o.duration <= 0:
				return usageErrorf("--duration must be positive, got %v", o.duration)
			case o.recipients < 2 || o.recipients > benchMaxRecipients:
				return usageErrorf("--recipients must be between 2 and %d, got %d", benchMaxRecipients, o.recipients)
			case o.concurrency < 1:
				return usageErrorf("--concurrency must be at least 1, got %d", o.concurrency)
			case o.memMessages < 10:
				return usageErrorf("--mem-messages must be at least 10, got %d", o.memMessages)
			}
			o.endpoints = slices.DeleteFunc(o.endpoints, func(n int) bool { return n == 0 })
			for _, n := range o.endpoints {
				if n < 1 || n > benchMaxEndpoints {
					return usageErrorf("--endpoints must be between 1 and %d (0: no endpoints phase), got %d", benchMaxEndpoints, n)
				}
			}
			ctx, stop := notify(cmd.Context())
			defer stop()
			if o.amqpURL != "" {
				return withExitCode(runBenchAMQP(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), o))
			}
			return withExitCode(runBench(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), o))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "phases of 1s unless --duration says otherwise: the whole run takes under 30s")
	f.BoolVar(&o.json, "json", false, "end the output with one line of JSON holding every number")
	f.IntVar(&o.recipients, "recipients", 3, "recipients of the second latency phase (its JSON keys end in _N)")
	f.DurationVar(&o.duration, "duration", 3*time.Second, "length of each timed phase")
	f.IntVar(&o.concurrency, "concurrency", 16, "goroutines publishing at once in the concurrent reliable phase")
	f.IntVar(&o.keyBits, "key-bits", 2048, "RSA key size of the throwaway certificates")
	f.IntVar(&o.memMessages, "mem-messages", 100_000, "messages of the memory phase")
	f.IntSliceVar(&o.endpoints, "endpoints", []int{50, 200, 500}, "endpoint counts of the endpoints phase, one subscription over N publishers (0: skip it)")
	f.StringVar(&o.amqpURL, "amqp-url", "", "measure the AMQP bridge instead, each way, against raw amqp091-go publishing with confirms to the broker at `URL`")
	// Smaller keys or fewer messages measure something else: for tests.
	f.MarkHidden("key-bits")
	f.IntVar(&o.burst, "endpoints-burst", 20_000, "messages of each burst of the endpoints phase")
	f.MarkHidden("mem-messages")
	f.MarkHidden("endpoints-burst")
	return cmd
}

const (
	benchMaxRecipients = 10
	benchMaxEndpoints  = 2000
	benchPublisher     = "bench-publisher"
	benchModname       = "gilmsg-bench"
	benchPrefix        = "org.example.dev." + benchModname + "."
	// A window of messages in flight keeps the publisher from queueing
	// without bound ahead of a slower subscriber, so that every phase
	// measures a sustainable rate and ends soon after its duration.
	benchWindow = 4096
	// Each phase sends at least this many messages or samples, however
	// short the duration.
	benchMinMessages = 50
	benchMinSamples  = 20
	benchAckTimeout  = 10 * time.Second
	// benchGrace bounds how long a phase may outlast its duration before
	// it counts as stuck.
	benchGrace = 60 * time.Second
)

func benchConsumer(i int) string { return fmt.Sprintf("bench-consumer%02d", i+1) }

// benchResults are the numbers of one run.
type benchResults struct {
	cores, recipients, concurrency, keyBits int
	bodyBytes, signedBodyBytes              int

	raw, unsigned, signed float64  // msgs/s
	stored                float64  // msgs/s, unsigned, with an SQLite persistent_store (bench_store.go)
	storedSigned          float64  // msgs/s, the same signed and validated
	ssl                   sslRates // libcrypto's own rates (bench_openssl.go)
	rsaSign, rsaVerify    float64  // per second, one goroutine: the best run
	signRuns, verifyRuns  []float64
	// The same with one goroutine per core at once: what the machine can
	// sign and verify in parallel (the best run).
	parSign, parVerify         float64
	parSignRuns, parVerifyRuns []float64
	floorMS                    float64
	rawRTT                     latencies // ms
	rawReliable                latencies // ms: a reliable publish's work with the primitives alone
	lat1, latN                 latencies
	concurrent                 float64 // msgs/s
	concurrentResends          uint64

	allocsUnsigned, allocsSigned, allocsReliable float64 // per message
	memMessages                                  int
	heapEarlyMB, heapEndMB, peakRSSMB            float64

	endpoints []endpointsResult

	// CPU of the whole process per message (per publish in the reliable
	// phases), µs.
	cpuRaw, cpuUnsigned, cpuSigned, cpuConcurrent float64

	gpg []gpgRate // the gpg backend, per key kind
}

type latencies struct {
	p50, p99, max float64 // ms
	cpuUS         float64 // the process's CPU per publish, µs
}

func runBench(ctx context.Context, stdout, stderr io.Writer, o benchOptions) error {
	prog := newBenchProgress(stderr, 14)
	defer prog.finish()
	prog.phase("throwaway PKI")
	dir, err := os.MkdirTemp("", "gilmsg-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	hosts := []string{benchPublisher}
	for i := range o.recipients {
		hosts = append(hosts, benchConsumer(i))
	}
	pki, err := gilmsg.NewDevPKI(dir, gilmsg.DevPKIOptions{Hosts: hosts, KeyBits: o.keyBits})
	if err != nil {
		return err
	}
	e := &benchEnv{o: o, pki: pki, prog: prog, payload: benchPayload()}
	defer e.closeReliable()
	r := &benchResults{cores: runtime.GOMAXPROCS(0), recipients: o.recipients,
		concurrency: o.concurrency, keyBits: o.keyBits, memMessages: o.memMessages}
	for _, step := range []struct {
		name string
		run  func(context.Context, *benchResults) error
	}{
		{"RSA sign and verify, one goroutine", e.rsaPhase},
		{"raw ZeroMQ PUB→SUB", e.rawPhase},
		{"publish→tail, unsigned", e.unsignedPhase},
		{"publish→tail, unsigned, stored in SQLite", e.storedPhase},
		{"publish→tail, signed and validated", e.signedPhase},
		{"publish→tail, signed, stored in SQLite", e.storedSignedPhase},
		{"reliable publish, 1 recipient", e.reliable1Phase},
		{fmt.Sprintf("reliable publish, %d recipients", o.recipients), e.reliableNPhase},
		{fmt.Sprintf("concurrent reliable publish, %d goroutines", o.concurrency), e.concurrentPhase},
		{fmt.Sprintf("memory over %d unsigned messages", o.memMessages), e.memoryPhase},
		{fmt.Sprintf("one subscription over %v endpoints, bursts of %d", o.endpoints, o.burst), e.endpointsPhase},
		{"RSA sign and verify again", e.rsaPhase},
		{"gpg sign and verify, one goroutine", e.gpgPhase},
	} {
		prog.phase(step.name)
		if err := step.run(ctx, r); err != nil {
			return fmt.Errorf("bench: %s: %w", step.name, err)
		}
	}
	r.peakRSSMB = peakRSSMB()
	prog.finish()
	r.writeTable(stdout)
	if o.json {
		line, err := r.jsonLine()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// benchEnv is what the phases share.
type benchEnv struct {
	o       benchOptions
	pki     *gilmsg.DevPKI
	prog    *benchProgress
	payload map[string]any
	rel     *reliableRig // made by the first reliable phase
	rsaKey  *rsa.PrivateKey
	ssl     *rsasig.PrivateKey // rsaKey as the library holds it
	rsaText []byte
	// bodyBytes is the size of the last body a bus flow received; only
	// its receiver writes it.
	bodyBytes int
}

// benchPayload is a typical fedmsg payload: with the envelope around it,
// an unsigned body of about 1 KB.
func benchPayload() map[string]any {
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

// config is the PKI's config for a bus named name ("" only subscribes),
// bound on a free loopback port, knowing the given endpoints.
func (e *benchEnv) config(name string, endpoints map[string][]string) *gilmsg.Config {
	cfg := e.pki.Config()
	cfg.Name = name
	cfg.Endpoints = map[string][]string{}
	for k, v := range endpoints {
		cfg.Endpoints[k] = v
	}
	if name != "" {
		cfg.Endpoints[name] = []string{"tcp://127.0.0.1:*"}
	}
	cfg.HighWaterMark = 0 // nothing dropped
	cfg.ZMQLinger = 100   // nothing left at exit is worth waiting for
	return cfg
}

func (e *benchEnv) newBus(cfg *gilmsg.Config) (*gilmsg.Bus, error) {
	return gilmsg.New(cfg, gilmsg.WithModname(benchModname))
}

// signedText is the canonical text a typical message's signature covers.
func (e *benchEnv) signedText() ([]byte, error) {
	now := time.Now()
	return gilmsg.MarshalCanonical(map[string]any{
		"crypto": "x509", "topic": benchPrefix + "reliable", "msg": e.payload,
		"timestamp": now.Unix(), "msg_id": strconv.Itoa(now.Year()) + "-" + uuid.NewString(),
		"i": 1, "username": "bench", "gilmsg_version": gilmsg.ProtocolVersion,
	})
}

// rsaPhase measures the floor: RSA PKCS#1 v1.5 over SHA-1, as the library
// signs and verifies, with the bench's key, in one goroutine. It runs first
// and again last; the floor is the faster of the two, and a large spread
// says that something else was using the CPU.
func (e *benchEnv) rsaPhase(ctx context.Context, r *benchResults) error {
	if e.rsaKey == nil {
		key, err := readPKCS8Key(filepath.Join(e.pki.Dir, benchPublisher+".key"))
		if err != nil {
			return err
		}
		if e.rsaText, err = e.signedText(); err != nil {
			return err
		}
		e.rsaKey = key
	}
	key, text := e.rsaKey, e.rsaText
	var sig []byte
	sign, err := ratePerSecond(ctx, e.o.duration/2, func() (err error) {
		sig, err = rsaSign(key, text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := ratePerSecond(ctx, e.o.duration/2, func() error { return rsaVerify(key, text, sig) })
	if err != nil {
		return err
	}
	r.signRuns = append(r.signRuns, sign)
	r.verifyRuns = append(r.verifyRuns, verify)
	r.rsaSign, r.rsaVerify = slices.Max(r.signRuns), slices.Max(r.verifyRuns)
	r.floorMS = 2*1000/r.rsaSign + 2*1000/r.rsaVerify
	return e.sslPhase(ctx, r)
}

// parallelRSA measures the sign and verify rates of one goroutine per core
// at once, for about d each: what the machine can do in parallel now. The
// concurrent phase runs it just before and just after itself, so that its
// bound comes from the same minute (the faster run counts).
func (e *benchEnv) parallelRSA(ctx context.Context, r *benchResults, d time.Duration) error {
	key, text := e.rsaKey, e.rsaText
	sig, err := rsaSign(key, text)
	if err != nil {
		return err
	}
	sign, err := parallelRate(ctx, d, r.cores, func() error {
		_, err := rsaSign(key, text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := parallelRate(ctx, d/2, r.cores, func() error { return rsaVerify(key, text, sig) })
	if err != nil {
		return err
	}
	r.parSignRuns = append(r.parSignRuns, sign)
	r.parVerifyRuns = append(r.parVerifyRuns, verify)
	r.parSign, r.parVerify = slices.Max(r.parSignRuns), slices.Max(r.parVerifyRuns)
	return e.sslParallel(ctx, r)
}

// rsaSign and rsaVerify are the floor's operations: RSA PKCS#1 v1.5 over
// SHA-1, as the library signs and verifies.
func rsaSign(key *rsa.PrivateKey, text []byte) ([]byte, error) {
	sum := sha1.Sum(text)
	return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:])
}

func rsaVerify(key *rsa.PrivateKey, text, sig []byte) error {
	sum := sha1.Sum(text)
	return rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], sig)
}

func readPKCS8Key(path string) (*rsa.PrivateKey, error) {
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: key is %T, not RSA", path, k)
	}
	key.Precompute()
	return key, nil
}

// ratePerSecond calls op for about d (at least benchMinSamples times).
func ratePerSecond(ctx context.Context, d time.Duration, op func() error) (float64, error) {
	start := time.Now()
	n := 0
	for ; n < benchMinSamples || time.Since(start) < d; n++ {
		if err := op(); err != nil {
			return 0, err
		}
		if n%64 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// parallelRate is ratePerSecond over n goroutines calling op at once: the
// calls of all of them per second.
func parallelRate(ctx context.Context, d time.Duration, n int, op func() error) (float64, error) {
	rates := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rates[i], errs[i] = ratePerSecond(ctx, d, op)
		}()
	}
	wg.Wait()
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return sum, errors.Join(errs...)
}

// rawPhase is the baseline: pebbe/zmq4 alone, PUB to SUB, the same two
// frames as the unsigned phase's messages.
func (e *benchEnv) rawPhase(ctx context.Context, r *benchResults) error {
	now := time.Now()
	body, err := gilmsg.MarshalCanonical(map[string]any{
		"topic": benchPrefix + "msg", "msg": e.payload, "timestamp": now.Unix(),
		"msg_id": strconv.Itoa(now.Year()) + "-" + uuid.NewString(), "i": 1, "username": "bench",
	})
	if err != nil {
		return err
	}
	r.bodyBytes = len(body)
	zctx, err := zmq.NewContext()
	if err != nil {
		return err
	}
	defer zctx.Term()
	pub, sub, err := rawPair(zctx, zctx)
	defer closeSockets(pub, sub)
	if err != nil {
		return err
	}
	topic, end := []byte(benchPrefix+"msg"), []byte(benchPrefix+"end")
	fl := flow{
		send: func(_ context.Context, last bool) error {
			t, b := topic, body
			if last {
				t, b = end, nil
			}
			if _, err := pub.SendBytes(t, zmq.SNDMORE); err != nil {
				return err
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
	if err != nil {
		return err
	}
	r.raw, r.cpuRaw = res.rate(), res.cpuPerMsg()
	r.rawRTT, err = e.rawRoundTrip(ctx, topic, body)
	return err
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
		if err := errors.Join(s.SetSndhwm(0), s.SetRcvhwm(0)); err != nil {
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
		if _, err := pub.SendMessage("probe", ""); err != nil {
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
}

// cpuPerMsg is the process's CPU per message, in µs: both ends of the bus
// and libzmq's threads, steadier than a rate on a shared machine.
func (f flowResult) cpuPerMsg() float64 { return cpuUS(f.cpu, f.n) }

func cpuUS(cpu time.Duration, n int) float64 {
	return float64(cpu) / float64(time.Microsecond) / float64(max(n, 1))
}

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
	cpu0 := processCPU()
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
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&after)
	return flowResult{n: received, elapsed: last.Sub(start), mallocs: after.Mallocs - before.Mallocs, cpu: cpu}, nil
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
	opts := []gilmsg.SubscribeOption{gilmsg.FromEndpoints(pub.Endpoint())}
	if !sign {
		opts = append(opts, gilmsg.NoValidate())
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
	fl, stop, err := e.busFlow(ctx, false)
	if err != nil {
		return err
	}
	defer stop()
	res, err := e.runFlow(ctx, fl, e.o.duration, benchMinMessages)
	if err != nil {
		return err
	}
	r.unsigned, r.allocsUnsigned, r.cpuUnsigned = res.rate(), res.allocsPerMsg(), res.cpuPerMsg()
	return nil
}

func (e *benchEnv) signedPhase(ctx context.Context, r *benchResults) error {
	fl, stop, err := e.busFlow(ctx, true)
	if err != nil {
		return err
	}
	defer stop()
	res, err := e.runFlow(ctx, fl, e.o.duration, benchMinMessages)
	if err != nil {
		return err
	}
	r.signed, r.allocsSigned, r.cpuSigned = res.rate(), res.allocsPerMsg(), res.cpuPerMsg()
	r.signedBodyBytes = e.bodyBytes
	return nil
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
		sub, err := rig.consumers[i].Subscribe(ctx, benchPrefix, gilmsg.FromEndpoints(rig.pub.Endpoint()))
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
			gilmsg.Recipients(e.recipients(n)...), gilmsg.AckTimeout(benchAckTimeout))
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
	// The last phase to use the rig: its subscriptions keep up to 4096
	// signed ACKs each for resends, which the memory phase must not count.
	defer e.closeReliable()
	rig, err := e.tailN(ctx, 1)
	if err != nil {
		return err
	}
	if err := e.parallelRSA(ctx, r, e.o.duration/4); err != nil {
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
				_, err := rig.pub.Publish(ctx, "reliable", e.payload,
					gilmsg.Recipients(benchConsumer(0)), gilmsg.AckTimeout(benchAckTimeout))
				if err != nil {
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
	return e.parallelRSA(ctx, r, e.o.duration/4)
}

// peakRSSMB is the process's peak resident set (VmHWM), or, where /proc
// is not there, what the Go runtime got from the OS.
func peakRSSMB() float64 {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err == nil {
					return kb / 1024
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys) / (1 << 20)
}

// signSpread is how far apart the two sign-rate runs were, relative to the
// faster: a few percent is noise, more means a disturbed run.
func (r *benchResults) signSpread() float64 {
	return 1 - slices.Min(r.signRuns)/slices.Max(r.signRuns)
}

// The ratios the targets are set on.

func (r *benchResults) unsignedVsRaw() float64     { return r.unsigned / r.raw }
func (r *benchResults) signedVsSignBound() float64 { return r.signed / r.rsaSign }
func (r *benchResults) p50VsFloor() float64        { return r.lat1.p50 / r.floorMS }

// The first round's bounds for latency and concurrency, refined below by
// what they left out and the run measures: kept, reported beside them.
func (r *benchResults) signBound() float64             { return float64(r.cores) * r.rsaSign / 2 }
func (r *benchResults) concurrentVsSignBound() float64 { return r.concurrent / r.signBound() }

// The reliable publish's bound is its own work done with the primitives
// alone (rawReliable): the floor counts the cryptography only, and floor +
// raw round trip adds a transport measured hot, message after message,
// while each hop of a reliable publish follows a signature's worth of
// computation, after which waking the other side costs more.
func (r *benchResults) p50VsRawReliable() float64 { return r.lat1.p50 / r.rawReliable.p50 }
func (r *benchResults) floorPlusRTTMS() float64   { return r.floorMS + r.rawRTT.p50 }
func (r *benchResults) p50VsFloorPlusRTT() float64 {
	return r.lat1.p50 / r.floorPlusRTTMS()
}

// cryptoBound is the concurrent phase's bound: the messages per second
// whose cryptography, two signs and two verifies each, the cores can do
// at the parallel rates measured in this run. The first round's
// cores × sign rate ÷ 2 assumed that the cores sign as fast together as
// one alone and left the verifies out.
func (r *benchResults) cryptoBound() float64 {
	return 1 / (2/r.parSign + 2/r.parVerify)
}
func (r *benchResults) concurrentVsCryptoBound() float64 { return r.concurrent / r.cryptoBound() }

// benchKV is one number of the JSON line.
type benchKV struct {
	key string
	val float64
}

func (r *benchResults) numbers() []benchKV {
	n := strconv.Itoa(r.recipients)
	kvs := []benchKV{
		{"raw_zmq_msgs_per_s", r.raw},
		{"unsigned_msgs_per_s", r.unsigned},
		{"stored_msgs_per_s", r.stored},
		{"stored_vs_unsigned", r.stored / r.unsigned},
		{"signed_msgs_per_s", r.signed},
		{"rsa_sign_per_s", r.rsaSign},
		{"rsa_verify_per_s", r.rsaVerify},
		{"rsa_sign_spread", r.signSpread()},
		{"rsa_sign_per_s_parallel", r.parSign},
		{"rsa_verify_per_s_parallel", r.parVerify},
		{"crypto_floor_ms", r.floorMS},
		{"crypto_floor_plus_rtt_ms", r.floorPlusRTTMS()},
		{"concurrent_crypto_bound_msgs_per_s", r.cryptoBound()},
		{"reliable_p50_ms_1", r.lat1.p50},
		{"reliable_p99_ms_1", r.lat1.p99},
		{"reliable_p50_ms_" + n, r.latN.p50},
		{"reliable_p99_ms_" + n, r.latN.p99},
		{"concurrent_reliable_msgs_per_s", r.concurrent},
		{"cores", float64(r.cores)},
		{"peak_rss_mb", r.peakRSSMB},
		{"unsigned_vs_raw", r.unsignedVsRaw()},
		{"signed_vs_sign_bound", r.signedVsSignBound()},
		{"reliable_p50_vs_raw_reliable", r.p50VsRawReliable()},
		{"concurrent_vs_crypto_bound", r.concurrentVsCryptoBound()},
		{"raw_reliable_p50_ms", r.rawReliable.p50},
		{"raw_reliable_p99_ms", r.rawReliable.p99},
		{"reliable_p50_vs_floor_plus_rtt", r.p50VsFloorPlusRTT()},
		{"reliable_p50_vs_floor", r.p50VsFloor()},
		{"concurrent_vs_sign_bound", r.concurrentVsSignBound()},
		{"reliable_p99_vs_p50_1", r.lat1.p99 / r.lat1.p50},
		{"raw_zmq_rtt_p50_ms", r.rawRTT.p50},
		{"raw_zmq_rtt_p99_ms", r.rawRTT.p99},
		{"reliable_max_ms_1", r.lat1.max},
		{"reliable_max_ms_" + n, r.latN.max},
		{"allocs_per_msg", r.allocsUnsigned},
		{"allocs_per_msg_signed", r.allocsSigned},
		{"allocs_per_reliable_publish", r.allocsReliable},
		{"heap_mb_at_tenth", r.heapEarlyMB},
		{"heap_mb_at_end", r.heapEndMB},
		{"mem_messages", float64(r.memMessages)},
		{"concurrent_resends", float64(r.concurrentResends)},
		{"concurrency", float64(r.concurrency)},
		{"recipients", float64(r.recipients)},
		{"key_bits", float64(r.keyBits)},
		{"body_bytes", float64(r.bodyBytes)},
		{"signed_body_bytes", float64(r.signedBodyBytes)},
		{"cpu_us_per_msg_raw", r.cpuRaw},
		{"cpu_us_per_msg_unsigned", r.cpuUnsigned},
		{"cpu_us_per_msg_signed", r.cpuSigned},
		{"cpu_us_per_msg_reliable_1", r.lat1.cpuUS},
		{"cpu_us_per_msg_reliable_" + n, r.latN.cpuUS},
		{"cpu_us_per_msg_concurrent", r.cpuConcurrent},
	}
	for _, ep := range r.endpoints {
		n := strconv.Itoa(ep.n)
		kvs = append(kvs,
			benchKV{"endpoints_msgs_per_s_" + n, ep.rate},
			benchKV{"endpoints_cpu_us_per_msg_" + n, ep.cpuUSPerMs},
			benchKV{"endpoints_threads_" + n, float64(ep.threads)})
	}
	return kvs
}

func (r *benchResults) allNumbers() []benchKV {
	return slices.Concat(r.numbers(), r.sslNumbers(), r.gpgNumbers())
}

// jsonLine writes the numbers by hand: their keys depend on --recipients,
// and a NaN or infinity is a bug to report, not a value to encode.
func (r *benchResults) jsonLine() (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range r.allNumbers() {
		if math.IsNaN(kv.val) || math.IsInf(kv.val, 0) {
			return "", fmt.Errorf("bench: %s is %v", kv.key, kv.val)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(kv.key))
		b.WriteByte(':')
		b.WriteString(strconv.FormatFloat(kv.val, 'g', 6, 64))
	}
	b.WriteByte('}')
	return b.String(), nil
}

func (r *benchResults) writeTable(w io.Writer) {
	fmt.Fprintf(w, "gilmsg bench: %d cores, %d-bit RSA, %s; bodies of %d B unsigned, %d B signed\n\n",
		r.cores, r.keyBits, runtime.Version(), r.bodyBytes, r.signedBodyBytes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	check := func(ok bool, format string, args ...any) string {
		verdict := "ok"
		if !ok {
			verdict = "MISSED"
		}
		return fmt.Sprintf(format, args...) + " " + verdict
	}
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	row("phase", "result", "against its bound (target)")
	runs := func(v []float64) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf("%.0f", x))
		}
		return "runs: " + strings.Join(s, ", ")
	}
	spread := runs(r.signRuns)
	if r.signSpread() > 0.05 {
		spread += fmt.Sprintf(" (%.0f%% apart: the CPU was shared)", 100*r.signSpread())
	}
	row("RSA sign, 1 goroutine", fmt.Sprintf("%.0f /s", r.rsaSign), spread)
	row("RSA verify, 1 goroutine", fmt.Sprintf("%.0f /s", r.rsaVerify), runs(r.verifyRuns))
	row(fmt.Sprintf("RSA sign, %d goroutines", r.cores), fmt.Sprintf("%.0f /s", r.parSign), runs(r.parSignRuns)+" (around the concurrent phase)")
	row(fmt.Sprintf("RSA verify, %d goroutines", r.cores), fmt.Sprintf("%.0f /s", r.parVerify), runs(r.parVerifyRuns))
	r.gpgRows(row)
	r.sslRows(row, check)
	row("crypto floor: 2 signs + 2 verifies", fmt.Sprintf("%.2f ms", r.floorMS), "crypto/rsa")
	row("floor + raw round trip", fmt.Sprintf("%.2f ms", r.floorPlusRTTMS()), "")
	row("raw ZeroMQ PUB→SUB", fmt.Sprintf("%.0f msg/s", r.raw), "")
	row("raw ZeroMQ round trip, 2 contexts", fmt.Sprintf("p50 %.3f ms, p99 %.3f ms", r.rawRTT.p50, r.rawRTT.p99), "")
	row("publish→tail, unsigned", fmt.Sprintf("%.0f msg/s", r.unsigned),
		check(r.unsignedVsRaw() >= 0.5, "%.2f × raw (≥ 0.5)", r.unsignedVsRaw()))
	row(fmt.Sprintf("publish→tail, stored, %d goroutines", benchStoreWriters), fmt.Sprintf("%.0f msg/s", r.stored),
		check(r.stored >= 0.3*r.unsigned, "%.2f × unsigned (≥ 0.3)", r.stored/r.unsigned))
	row("publish→tail, signed+validated", fmt.Sprintf("%.0f msg/s", r.signed),
		check(r.signedVsSignBound() >= 0.8, "%.2f × sign rate (≥ 0.8)", r.signedVsSignBound()))
	row("raw reliable: rsa + zmq4 alone", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", r.rawReliable.p50, r.rawReliable.p99),
		"sign, send, verify, sign, send back, verify")
	row("reliable, 1 recipient", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.lat1.p50, r.lat1.p99, r.lat1.max),
		check(r.p50VsRawReliable() <= 1.3, "p50 %.2f × raw reliable (≤ 1.3)", r.p50VsRawReliable()))
	row("", "", check(r.lat1.p99 <= 3*r.lat1.p50, "p99 %.2f × p50 (≤ 3)", r.lat1.p99/r.lat1.p50))
	row("", "", fmt.Sprintf("p50 %.2f × (floor + raw round trip), %.2f × floor (round 1's bound)", r.p50VsFloorPlusRTT(), r.p50VsFloor()))
	row(fmt.Sprintf("reliable, %d recipients", r.recipients),
		fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.latN.p50, r.latN.p99, r.latN.max), "")
	row(fmt.Sprintf("concurrent reliable, %d goroutines", r.concurrency),
		fmt.Sprintf("%.0f msg/s, %d resends", r.concurrent, r.concurrentResends),
		check(r.concurrentVsCryptoBound() >= 0.7, "%.2f × 2 signs + 2 verifies on %d cores = %.0f/s (≥ 0.7)",
			r.concurrentVsCryptoBound(), r.cores, r.cryptoBound()))
	row("", "", fmt.Sprintf("%.2f × cores×sign/2 = %.0f/s (round 1's bound)", r.concurrentVsSignBound(), r.signBound()))
	row("CPU per message, µs", fmt.Sprintf("raw %.1f, unsigned %.1f, signed %.0f", r.cpuRaw, r.cpuUnsigned, r.cpuSigned),
		"whole process: both ends, libzmq threads")
	row("CPU per reliable publish, µs", fmt.Sprintf("1 recipient %.0f, %d recipients %.0f, concurrent %.0f",
		r.lat1.cpuUS, r.recipients, r.latN.cpuUS, r.cpuConcurrent), "")
	row("allocations per message", fmt.Sprintf("unsigned %.0f, signed %.0f, reliable %.0f",
		r.allocsUnsigned, r.allocsSigned, r.allocsReliable), "both ends of the bus counted")
	row("heap after GC", fmt.Sprintf("%.1f MB at %d, %.1f MB at %d msgs",
		r.heapEarlyMB, r.memMessages/10, r.heapEndMB, r.memMessages),
		check(r.heapEndMB <= r.heapEarlyMB*1.1+1, "flat (≤ +10%% + 1 MB)"))
	row("peak RSS", fmt.Sprintf("%.1f MB", r.peakRSSMB), "")
	for _, ep := range r.endpoints {
		row(fmt.Sprintf("%d endpoints, one subscription", ep.n),
			fmt.Sprintf("%.0f msg/s, %.1f µs CPU/msg", ep.rate, ep.cpuUSPerMs),
			fmt.Sprintf("%d OS threads", ep.threads))
	}
	tw.Flush()
}

// benchProgress is the line on stderr that says what runs; on a terminal
// it is rewritten in place with a live count.
type benchProgress struct {
	w     io.Writer
	tty   bool
	total int
	count atomic.Int64 // messages or samples of the current phase

	mu   sync.Mutex
	step int
	name string
	stop chan struct{}
	done chan struct{}
}

func newBenchProgress(w io.Writer, total int) *benchProgress {
	p := &benchProgress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
			p.stop, p.done = make(chan struct{}), make(chan struct{})
			go p.tick()
		}
	}
	return p
}

func (p *benchProgress) phase(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step++
	p.name = name
	p.count.Store(0)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K[%d/%d] %s …", p.step, p.total, name)
	} else {
		fmt.Fprintf(p.w, "bench [%d/%d] %s\n", p.step, p.total, name)
	}
}

func (p *benchProgress) tick() {
	defer close(p.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if n := p.count.Load(); n > 0 {
				fmt.Fprintf(p.w, "\r\033[K[%d/%d] %s … %d", p.step, p.total, p.name, n)
			}
			p.mu.Unlock()
		}
	}
}

// finish clears the line; it is safe to call twice.
func (p *benchProgress) finish() {
	if !p.tty {
		return
	}
	p.mu.Lock()
	stop := p.stop
	p.stop = nil
	p.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-p.done
	fmt.Fprint(p.w, "\r\033[K")
}
