package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// The PKI of the logger tests: the first host is the one that
// certnames["shell.<hostname>"] points to, as --cert-prefix shell uses.
const (
	shellCN    = "shell-host"
	loggerCN   = "publisher01"
	consumerCN = "consumer01"
)

// loggerConsumer is a consumer bus that tails addr (the logger's endpoint,
// or the relay's outbound side) and ACKs from its own endpoint.
func loggerConsumer(t *testing.T, pki *devpki.PKI, addr string) (*gilmsg.Bus, <-chan *gilmsg.Message) {
	t.Helper()
	cfg := testConfig(pki)
	cfg.Name = consumerCN
	cfg.Endpoints = map[string][]string{consumerCN: {"tcp://127.0.0.1:*"}}
	// The logger is not there yet: do not wait for it, ZeroMQ keeps
	// reconnecting in the background.
	cfg.PostInitSleep = 0.05
	b := newBus(t, cfg)
	return b, collect(t, b, "", gilmsg.WithEndpoints(addr))
}

// The logger binding its own endpoint (--name): plain and JSON lines, the
// certificate it signs with, bad input.
func TestLoggerWithName(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, shellCN, loggerCN, consumerCN)
	loggerEP := freePort(t)
	consumer, got := loggerConsumer(t, pki, loggerEP)
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{loggerCN: {loggerEP}, consumerCN: {consumer.Endpoint()}}
	cfg.MaxMessageSize = 64 << 10
	config := writeConfig(t, cfg)

	cases := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		signer string
		topic  string
		want   []string // payloads the consumer gets, in order
		stderr string
	}{
		{name: "plain lines, signed as the name",
			args:  []string{"--wait-subscribers", "1"},
			stdin: "first line\n  indented, trimmed  \n\nno newline at the end",
			code:  exitOK, signer: loggerCN, topic: "org.example.dev.logger.log",
			want: []string{`{"log":"first line"}`, `{"log":"indented, trimmed"}`, `{"log":""}`, `{"log":"no newline at the end"}`}},
		{name: "json input with --cert-prefix, topic and modname",
			args:  []string{"--wait-subscribers", "1", "--json-input", "--cert-prefix", "shell", "--topic", "build.done", "--modname", "ci"},
			stdin: "{\"n\": 1, \"x\": 1.50}\n\n[true, null]\n",
			code:  exitOK, signer: shellCN, topic: "org.example.dev.ci.build.done",
			want: []string{`{"n":1,"x":1.5}`, `[true,null]`}},
		{name: "reliable --message",
			args: []string{"--message", "café", "--recipients", consumerCN, "--ack-timeout", "5"},
			code: exitOK, signer: loggerCN, topic: "org.example.dev.logger.log",
			want: []string{`{"log":"caf\u00e9"}`}},
		{name: "reliable, sent once (--no-resend)",
			args: []string{"--message", "once", "--recipients", consumerCN, "--ack-timeout", "5", "--no-resend"},
			code: exitOK, signer: loggerCN, topic: "org.example.dev.logger.log",
			want: []string{`{"log":"once"}`}},
		{name: "a line that is not JSON",
			args:  []string{"--wait-subscribers", "1", "--json-input"},
			stdin: "{\"ok\": true}\nnot json\n{\"ok\": 2}\n",
			code:  exitFailure, signer: loggerCN, topic: "org.example.dev.logger.log",
			want: []string{`{"ok":true}`, `{"ok":2}`}, stderr: "line 2: "},
		{name: "a line over max_message_size",
			args:  []string{"--wait-subscribers", "1"},
			stdin: "before\n" + strings.Repeat("x", 100000) + "\nafter\n" + strings.Repeat("y", 70000),
			code:  exitFailure, signer: loggerCN, topic: "org.example.dev.logger.log",
			want:   []string{`{"log":"before"}`, `{"log":"after"}`},
			stderr: "line 2: 100000 bytes, over max_message_size (65536): not published\ngilmsg logger: line 4: 70000 bytes"},
		{name: "a line that its envelope takes over max_message_size",
			args:  []string{"--wait-subscribers", "1"},
			stdin: "before\n" + strings.Repeat("z", 65000) + "\nafter\n",
			code:  exitFailure, signer: loggerCN, topic: "org.example.dev.logger.log",
			want:   []string{`{"log":"before"}`, `{"log":"after"}`},
			stderr: "line 2: gilmsg: message too large: msg is 65010 bytes encoded"},
		{name: "a reliable line that its envelope takes over max_message_size",
			args:  []string{"--recipients", consumerCN, "--ack-timeout", "5"},
			stdin: "before\n" + strings.Repeat("z", 65000) + "\nafter\n",
			code:  exitFailure, signer: loggerCN, topic: "org.example.dev.logger.log",
			want:   []string{`{"log":"before"}`, `{"log":"after"}`},
			stderr: "line 2: gilmsg: message too large: msg is 65010 bytes encoded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"logger", "--config", config, "--name", loggerCN}, tc.args...)
			res := runCLI(t, strings.NewReader(tc.stdin), args...)
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", res.code, tc.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", res.stderr, tc.stderr)
			}
			for _, want := range tc.want {
				m := next(t, got)
				if p := payload(t, m); p != want || m.Topic != tc.topic || m.Signer != tc.signer {
					t.Errorf("got %s on %s signed by %q, want %s on %s signed by %q", p, m.Topic, m.Signer, want, tc.topic, tc.signer)
				}
			}
		})
	}
	select {
	case m := <-got:
		t.Errorf("unexpected message %s on %s", payload(t, m), m.Topic)
	default:
	}
}

// Lines published as soon as the logger starts reach a tail that was
// already waiting for it: the first publish waits until post_init_sleep has
// passed since the bind, as fedmsg-logger's does (issue 11.1).
func TestLoggerFirstLinesReachRunningTail(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, loggerCN, consumerCN)
	loggerEP := freePort(t)
	_, got := loggerConsumer(t, pki, loggerEP)
	cfg := testConfig(pki)
	cfg.PostInitSleep = 1 // the consumer retries every 10–50 ms: plenty
	cfg.Endpoints = map[string][]string{loggerCN: {loggerEP}}
	res := runCLI(t, strings.NewReader("one\ntwo\nthree\n"), "logger", "--config", writeConfig(t, cfg), "--name", loggerCN)
	if res.code != exitOK {
		t.Fatalf("exit %d; stderr %q", res.code, res.stderr)
	}
	for _, want := range []string{`{"log":"one"}`, `{"log":"two"}`, `{"log":"three"}`} {
		if p := payload(t, next(t, got)); p != want {
			t.Errorf("got %s, want %s", p, want)
		}
	}
}

// The logger as fedmsg-logger runs it: active, through a relay, with
// reliable publishes ACKed (or not) by a consumer behind the relay.
func TestLoggerThroughRelay(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, shellCN, consumerCN)

	relay := startRelay(t, pki)

	consumer, got := loggerConsumer(t, pki, relay.OutboundEndpoint())
	cfg := testConfig(pki)
	cfg.RelayInbound = []string{relay.InboundEndpoint()}
	cfg.Endpoints = map[string][]string{"relay_outbound": {relay.OutboundEndpoint()}, consumerCN: {consumer.Endpoint()}}
	config := writeConfig(t, cfg)

	t.Run("ACKed by the recipient", func(t *testing.T) {
		res := runCLI(t, nil, "logger", "--config", config, "--message", `{"job": 7}`, "--json-input",
			"--recipients", consumerCN, "--ack-timeout", "5s", "--topic", "job")
		if res.code != exitOK || res.stderr != "" {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		m := next(t, got)
		if p := payload(t, m); p != `{"job":7}` || m.Topic != "org.example.dev.logger.job" || m.Signer != shellCN || !m.IsGilmsg() {
			t.Errorf("got %s on %s signed by %q (gilmsg %v)", p, m.Topic, m.Signer, m.IsGilmsg())
		}
	})

	t.Run("a recipient is missing", func(t *testing.T) {
		const ghost = "ghost.example.org"
		start := time.Now()
		res := runCLI(t, strings.NewReader("one\ntwo\n"), "logger", "--config", config,
			"--recipients", consumerCN+","+ghost, "--ack-timeout", "1")
		if res.code != exitTimeout {
			t.Fatalf("exit %d, want %d; stderr %q", res.code, exitTimeout, res.stderr)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("exited after %v: did not wait 1s per message", d)
		}
		errLines := lines(res.stderr)
		if len(errLines) != 2 {
			t.Fatalf("stderr %q: want one line per message", res.stderr)
		}
		for i, l := range errLines {
			where := []string{"line 1:", "line 2:"}[i]
			if !strings.Contains(l, where) || !strings.Contains(l, "no ACK from "+ghost+" ") || !strings.Contains(l, "ACKed by "+consumerCN) {
				t.Errorf("stderr line %q: want %s, missing %s, ACKed by %s", l, where, ghost, consumerCN)
			}
		}
		// The consumer had both: the logger went on after the first.
		for _, want := range []string{`{"log":"one"}`, `{"log":"two"}`} {
			if p := payload(t, next(t, got)); p != want {
				t.Errorf("consumer got %s, want %s", p, want)
			}
		}
	})

	t.Run("no relay", func(t *testing.T) {
		cfg := testConfig(pki)
		cfg.RelayInbound = []string{freePort(t)}
		cfg.PostInitSleep = 0.1
		res := runCLI(t, nil, "logger", "--config", writeConfig(t, cfg), "--message", "lost")
		if res.code != exitFailure {
			t.Errorf("exit %d, want %d", res.code, exitFailure)
		}
	})
}

func TestLoggerUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--ack-timeout", "1"},
		{"--recipients", "x", "--ack-timeout", "soon"},
		{"--recipients", "x", "--ack-timeout", "-1"},
		{"--wait-subscribers", "-1"},
		{"--recipients", ""},
		{"--recipients", " , "},
		{"--no-resend"},
		{"extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if res := runCLI(t, nil, append([]string{"logger"}, args...)...); res.code != exitUsage {
				t.Errorf("exit %d, want %d", res.code, exitUsage)
			}
		})
	}
}

func TestSecondsValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0.25", 250 * time.Millisecond, true},
		{"2", 2 * time.Second, true},
		{"1e-3", time.Millisecond, true},
		{"250ms", 250 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"0", 0, false},
		{"-1s", 0, false},
		{"NaN", 0, false},
		{"1e300", 0, false},
		{"later", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var v secondsValue
			err := v.Set(tc.in)
			if (err == nil) != tc.ok || v.d != tc.want {
				t.Errorf("Set(%q) = %v, %v; want %v, ok %v", tc.in, v.d, err, tc.want, tc.ok)
			}
		})
	}
}

// TestReadLinesHoldsNoLongLine: a line over the bound is read through, not
// held: reading one of 64 MiB with a bound of 1 MiB allocates little, and
// the lines around it come whole.
func TestReadLinesHoldsNoLongLine(t *testing.T) {
	const long, bound = 64 << 20, 1 << 20
	in := io.MultiReader(strings.NewReader("a\n"), io.LimitReader(repeatReader('x'), long), strings.NewReader("\nb\n"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var got []inputLine
	for batch := range readLines(in, make(chan struct{}), bound) {
		got = append(got, batch...)
	}
	runtime.ReadMemStats(&after)
	if len(got) != 3 || got[0].text != "a" || got[1].tooLong != long || got[1].text != "" || got[1].where != "line 2" || got[2].text != "b" {
		var saw []string
		for _, l := range got {
			saw = append(saw, fmt.Sprintf("%s: %d bytes kept, tooLong %d", l.where, len(l.text), l.tooLong))
		}
		t.Fatalf("lines %q, want a, one of %d bytes refused as line 2, b", saw, long)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > long/4 { // ReadString: over 64 MiB
		t.Errorf("reading a line of %d MiB allocated %d MiB", long>>20, alloc>>20)
	}
}

// repeatReader reads as c forever.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
