package main

import (
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
	"github.com/gilmsg/gilmsg-go/internal/rsasig"
)

type benchOptions struct {
	quick       bool
	cpuProfile  string
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
			if o.cpuProfile != "" {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
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
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `FILE`, each phase labelled (go tool pprof -tagfocus phase=signed)")
	f.StringVar(&o.amqpURL, "amqp-url", "", "measure the AMQP bridge instead, each way, against raw amqp091-go publishing with confirms (and consuming, for broker→bus) to the broker at `URL`")
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
	rawCapped             float64  // msgs/s: raw with the bus's per-subscriber cap (rawCappedPhase)
	rawCap                int      // that cap, messages
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
	switchesSigned                                float64 // context switches a signed message (bench_flow.go)
	cpuRawCapped                                  float64

	gpg []gpgRate // the gpg backend, per key kind
}

type latencies struct {
	p50, p99, max float64 // ms
	cpuUS         float64 // the process's CPU per publish, µs
}

func runBench(ctx context.Context, stdout, stderr io.Writer, o benchOptions) error {
	prog := newBenchProgress(stderr, 15)
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
	pki, err := devpki.New(dir, devpki.Options{Hosts: hosts, KeyBits: o.keyBits})
	if err != nil {
		return err
	}
	e := &benchEnv{o: o, pki: pki, prog: prog, payload: benchPayload()}
	defer e.closeReliable()
	r := &benchResults{cores: runtime.GOMAXPROCS(0), recipients: o.recipients,
		concurrency: o.concurrency, keyBits: o.keyBits, memMessages: o.memMessages}
	for _, step := range []struct {
		label, name string
		run         func(context.Context, *benchResults) error
	}{
		{"rsa_first", "RSA sign and verify, one goroutine", e.rsaPhase},
		{"raw", "raw ZeroMQ PUB→SUB", e.rawPhase},
		{"rawcap", "raw ZeroMQ PUB→SUB, capped as the bus", e.rawCappedPhase},
		{"plain", "publish→tail, unsigned", e.unsignedPhase},
		{"stored", "publish→tail, unsigned, stored in SQLite", e.storedPhase},
		{"signed", "publish→tail, signed and validated", e.signedPhase},
		{"signstore", "publish→tail, signed, stored in SQLite", e.storedSignedPhase},
		{"reliable1", "reliable publish, 1 recipient", e.reliable1Phase},
		{"reliableN", fmt.Sprintf("reliable publish, %d recipients", o.recipients), e.reliableNPhase},
		{"concurrent", fmt.Sprintf("concurrent reliable publish, %d goroutines", o.concurrency), e.concurrentPhase},
		{"memory", fmt.Sprintf("memory over %d unsigned messages", o.memMessages), e.memoryPhase},
		{"endpoints", fmt.Sprintf("one subscription over %v endpoints, bursts of %d", o.endpoints, o.burst), e.endpointsPhase},
		{"rsa_last", "RSA sign and verify again", e.rsaPhase},
		{"gpg", "gpg sign and verify, one goroutine", e.gpgPhase},
	} {
		prog.phase(step.name)
		if err := inPhase(ctx, step.label, func(ctx context.Context) error { return step.run(ctx, r) }); err != nil {
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

// inPhase runs f with the profiler label phase=label, so that
// `go tool pprof -tagfocus phase=signed` shows one phase of a --cpuprofile
// (pprof matches the value as a regexp, so no label contains another).
// The goroutines f starts inherit the label: a phase must start the buses
// it measures itself, not reuse those of an earlier phase.
func inPhase(ctx context.Context, label string, f func(context.Context) error) (err error) {
	pprof.Do(ctx, pprof.Labels("phase", label), func(ctx context.Context) { err = f(ctx) })
	return err
}

// benchEnv is what the phases share.
type benchEnv struct {
	o       benchOptions
	pki     *devpki.PKI
	prog    *benchProgress
	payload map[string]any
	rel     *reliableRig // each reliable phase makes its own (inPhase)
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
