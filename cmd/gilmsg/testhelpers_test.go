package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// cliResult is what one run of gilmsg left behind.
type cliResult struct {
	code           int
	stdout, stderr string
}

// syncBuffer is a bytes.Buffer that a test may read while a command that
// runs in another goroutine writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCLI runs gilmsg with args through run, as main does, with stdin
// (nil: empty), and returns the exit code and the outputs. Each run builds
// its own command tree, so runs may happen at once.
func runCLI(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	var out, errOut syncBuffer
	return runCLIWith(t, context.Background(), stdin, &out, &errOut, args...)
}

// startCLI runs gilmsg in a goroutine, for a command that the test feeds
// or watches while it runs; its result arrives on done. Cancelling ctx is
// the command's SIGINT. The command is stopped and waited for when the
// test ends.
func startCLI(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (out, errOut *syncBuffer, done <-chan cliResult) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	out, errOut = &syncBuffer{}, &syncBuffer{}
	result := make(chan cliResult, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		result <- runCLIWith(t, ctx, stdin, out, errOut, args...)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return out, errOut, result
}

// textSink is where a command under test writes, read back afterwards.
type textSink interface {
	io.Writer
	String() string
}

// runCLIWith is runCLI writing to the given buffers under ctx. It may run
// in another goroutine than the test's, so it reports with t.Errorf only.
func runCLIWith(t *testing.T, ctx context.Context, stdin io.Reader, out, errOut textSink, args ...string) cliResult {
	root := newRootCmd()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	root.SetIn(stdin)
	root.SetOut(out)
	root.SetErr(errOut)
	// Unless the test chose them: no config directory, so that the
	// machine's /etc/fedmsg.d, ~/.fedmsg.d and ./fedmsg.d stay out of the
	// tests (TestMain drops FEDMSG_* variables).
	if _, ok := ctx.Value(configSourcesKey{}).(configSources); !ok {
		ctx = withConfigSources(ctx, configSources{environ: os.Environ()})
	}
	root.SetContext(ctx)
	code := execute(root, args)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// devPKI makes a throwaway PKI with small keys, quick to generate.
func devPKI(t *testing.T, hosts ...string) *devpki.PKI {
	t.Helper()
	p, err := devpki.New(t.TempDir(), devpki.Options{Hosts: hosts, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig is p's config tuned for tests: reconnects quickly, and a
// bounded wait for connections (reached only when a peer is down).
func testConfig(p *devpki.PKI) *gilmsg.Config {
	cfg := p.Config()
	cfg.PostInitSleep = 2
	cfg.ZMQReconnectIvl = 10
	cfg.ZMQReconnectIvlMax = 50
	cfg.ZMQLinger = 200
	return cfg
}

// writeConfig writes cfg where the commands can load it with --config.
func writeConfig(t *testing.T, cfg *gilmsg.Config) string {
	t.Helper()
	return writeConfigJSON(t, cfg)
}

// writeConfigWith is writeConfig with keys of other components (such as
// Config.Extra holds, which JSON encoding leaves out) added.
func writeConfigWith(t *testing.T, cfg *gilmsg.Config, extra map[string]any) string {
	t.Helper()
	m := cfg.AsMap()
	maps.Copy(m, extra)
	return writeConfigJSON(t, m)
}

func writeConfigJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fedmsg.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newBus starts a bus closed at the end of the test.
func newBus(t *testing.T, cfg *gilmsg.Config) *gilmsg.Bus {
	t.Helper()
	b, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", cfg.Name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// freePort returns a loopback TCP address nobody listens on right now, for
// the rare test where an endpoint must be known before its bus binds it.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// collect tails b on prefix from a goroutine that ends with the test, and
// returns what it yields.
func collect(t *testing.T, b *gilmsg.Bus, prefix string, opts ...gilmsg.SubscribeOption) <-chan *gilmsg.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.Subscribe(ctx, prefix, opts...)
	if err != nil {
		cancel()
		t.Fatalf("Subscribe: %v", err)
	}
	ch := make(chan *gilmsg.Message, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer sub.Close()
		for m, err := range sub.Messages(ctx) {
			if err != nil {
				t.Errorf("tail: %v", err)
				continue
			}
			// A test that stopped reading must not keep this goroutine,
			// and its cleanup, waiting forever.
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// next waits for one message, failing the test after a generous bound.
func next(t *testing.T, ch <-chan *gilmsg.Message) *gilmsg.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("tail ended")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

// payload returns m's msg re-encoded canonically, for comparisons.
func payload(t *testing.T, m *gilmsg.Message) string {
	t.Helper()
	b, err := gilmsg.MarshalCanonical(m.Msg())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func mustJSON(t *testing.T, line string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, line)
	}
	return v
}
