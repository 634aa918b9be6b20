package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

const (
	tailPubCN = "publisher01"
	tailCN    = "tail01"
)

// tailNet is a publisher bus and the config a tail under test loads.
type tailNet struct {
	pki    *devpki.PKI
	pub    *gilmsg.Bus
	tailEP string // where a tail with --name tail01 binds
	config string // lists only the publisher
	withMe string // lists the publisher and tail01
}

func newTailNet(t *testing.T, mutate func(*gilmsg.Config)) *tailNet {
	t.Helper()
	n := &tailNet{pki: devPKI(t, tailPubCN, tailCN), tailEP: freePort(t)}
	cfg := testConfig(n.pki)
	cfg.Name = tailPubCN
	// tail01's address must be known before a tail binds it: the
	// publisher's ACK listener connects there.
	cfg.Endpoints = map[string][]string{tailPubCN: {"tcp://127.0.0.1:*"}, tailCN: {n.tailEP}}
	cfg.Modname = "test"
	if mutate != nil {
		mutate(cfg)
	}
	n.pub = newBus(t, cfg)
	tcfg := testConfig(n.pki)
	tcfg.Endpoints = map[string][]string{tailPubCN: {n.pub.Endpoint()}, tailCN: {n.tailEP}}
	n.withMe = writeConfig(t, tcfg)
	delete(tcfg.Endpoints, tailCN)
	n.config = writeConfig(t, tcfg)
	return n
}

// publishUntil calls publish every few milliseconds until the command
// running in the background ends, and returns its result.
func publishUntil(t *testing.T, done <-chan cliResult, publish func(i int)) cliResult {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for i := 1; ; i++ {
		publish(i)
		select {
		case res := <-done:
			return res
		case <-tick.C:
		case <-timeout:
			t.Fatal("the command did not end within 10s")
		}
	}
}

func TestTailJSON(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	_, _, done := startCLI(t, context.Background(), nil, "tail", "--config", n.config, "--json", "--count", "2")
	res := publishUntil(t, done, func(i int) {
		if _, err := n.pub.Publish(context.Background(), "tick", map[string]any{"n": i, "text": "<é>"}); err != nil {
			t.Errorf("publish: %v", err)
		}
	})
	if res.code != exitOK {
		t.Fatalf("exit %d; stderr %q", res.code, res.stderr)
	}
	out := lines(res.stdout)
	if len(out) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(out), res.stdout)
	}
	var ns []float64
	for _, line := range out {
		if !strings.HasPrefix(line, `{"name":"publisher01","endpoint":"`+n.pub.Endpoint()+`","topic":"org.example.dev.test.tick","signer":"publisher01","msg":{`) {
			t.Errorf("line %s", line)
		}
		rec := mustJSON(t, line)
		env, _ := rec["msg"].(map[string]any)
		payload, _ := env["msg"].(map[string]any)
		if env["topic"] != "org.example.dev.test.tick" || env["signature"] == nil || env["certificate"] == nil || payload["text"] != "<é>" {
			t.Errorf("envelope %v", env)
		}
		// The envelope must be the signed one, byte for byte re-encodable.
		body, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		e, err := gilmsg.ParseEnvelope(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.pub.Validator().Validate(e); err != nil {
			t.Errorf("the printed envelope does not validate: %v", err)
		}
		f, _ := payload["n"].(float64)
		ns = append(ns, f)
	}
	if len(ns) == 2 && ns[1] != ns[0]+1 {
		t.Errorf("n = %v: want two consecutive messages", ns)
	}
}

func TestTailFormatsAndFilters(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	human := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d org\.example\.dev\.test\.keep publisher01 \{"n":\d+,"text":"<é>\\n"\}$`)
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"human, --include and --exclude", []string{"--include", `keep`, "--exclude", `^org\.example\.dev\.test\.drop`},
			func(t *testing.T, out string) {
				if !human.MatchString(strings.TrimSuffix(out, "\n")) {
					t.Errorf("output %q does not match %s", out, human)
				}
			}},
		{"--topic is the subscription prefix", []string{"--topic", "org.example.dev.test.k"},
			func(t *testing.T, out string) {
				if !human.MatchString(strings.TrimSuffix(out, "\n")) {
					t.Errorf("output %q does not match %s", out, human)
				}
			}},
		{"--really-pretty without a terminal: fedmsg's text, no colour", []string{"--really-pretty", "--include", "keep$"},
			func(t *testing.T, out string) {
				want := regexp.MustCompile(`^\{\n  "crypto": "x509",\n  "i": \d+,\n  "msg": \{\n    "n": \d+,\n    "text": "<\\u00e9>\\n"\n  \},\n` +
					`  "msg_id": "[^"]+",\n  "timestamp": \d+,\n  "topic": "org\.example\.dev\.test\.(drop\.)?keep",\n  "username": "[^"]*"\n\}\n$`)
				if !want.MatchString(out) {
					t.Errorf("output %q does not match %s", out, want)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"tail", "--config", n.config, "--count", "1"}, tc.args...)
			_, _, done := startCLI(t, context.Background(), nil, args...)
			res := publishUntil(t, done, func(i int) {
				for _, topic := range []string{"drop.keep", "other", "keep"} {
					if _, err := n.pub.Publish(context.Background(), topic, map[string]any{"n": i, "text": "<é>\n"}); err != nil {
						t.Errorf("publish: %v", err)
					}
				}
			})
			if res.code != exitOK {
				t.Fatalf("exit %d; stderr %q", res.code, res.stderr)
			}
			tc.check(t, res.stdout)
		})
	}
}

// Messages that fail validation are reported on stderr and not printed,
// unless --no-validate; a cancelled context (the signal) ends tail with 0.
func TestTailInvalidAndSignal(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, func(c *gilmsg.Config) { c.SignMessages = false })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut, done := startCLI(t, ctx, nil, "tail", "--config", n.config)
	var res cliResult
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
wait:
	for {
		if _, err := n.pub.Publish(context.Background(), "unsigned", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
			if strings.Contains(errOut.String(), "dropped a message from publisher01") {
				cancel()
			}
		case res = <-done:
			break wait
		case <-deadline:
			t.Fatalf("no report of the invalid message; stderr %q", errOut.String())
		}
	}
	if res.code != exitOK || out.String() != "" || !strings.Contains(res.stderr, "(unsigned)") {
		t.Errorf("exit %d, stdout %q, stderr %q: want 0, nothing printed, the reason on stderr", res.code, res.stdout, res.stderr)
	}

	_, _, done = startCLI(t, context.Background(), nil, "tail", "--config", n.config, "--no-validate", "--count", "1")
	res = publishUntil(t, done, func(int) {
		if _, err := n.pub.Publish(context.Background(), "unsigned", nil); err != nil {
			t.Errorf("publish: %v", err)
		}
	})
	if res.code != exitOK || !strings.Contains(res.stdout, " org.example.dev.test.unsigned - {}\n") {
		t.Errorf("exit %d, stdout %q", res.code, res.stdout)
	}
}

// tail ACKs reliable messages when it has a name to publish from, and not
// with --no-ack or without a name; it does not print its own ACKs.
func TestTailAcks(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)

	t.Run("with --name", func(t *testing.T) {
		_, _, done := startCLI(t, context.Background(), nil, "tail", "--config", n.withMe, "--name", tailCN, "--json", "--count", "2")
		var receipts []*gilmsg.Receipt
		for i := range 2 {
			r, err := n.pub.Publish(ctxFor(t), "job", map[string]any{"n": i}, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(5*time.Second))
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			receipts = append(receipts, r)
		}
		var res cliResult
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("tail did not end")
		}
		out := lines(res.stdout)
		if res.code != exitOK || len(out) != 2 {
			t.Fatalf("exit %d, stdout %q", res.code, res.stdout)
		}
		for i, line := range out {
			rec := mustJSON(t, line)
			env, _ := rec["msg"].(map[string]any)
			if rec["topic"] != "org.example.dev.test.job" || env["msg_id"] != receipts[i].MsgID {
				t.Errorf("line %d: %s, want the job %s (and not an ACK)", i, line, receipts[i].MsgID)
			}
		}
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"--no-ack", []string{"--name", tailCN, "--no-ack"}},
		{"no name", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"tail", "--config", n.config, "--count", "1"}, tc.args...)
			_, _, done := startCLI(t, context.Background(), nil, args...)
			var errs []error
			res := publishUntil(t, done, func(int) {
				_, err := n.pub.Publish(context.Background(), "job", nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(50*time.Millisecond))
				errs = append(errs, err)
			})
			if res.code != exitOK || len(lines(res.stdout)) != 1 {
				t.Fatalf("exit %d, stdout %q", res.code, res.stdout)
			}
			for _, err := range errs {
				if !errors.Is(err, gilmsg.ErrAckTimeout) {
					t.Errorf("publish: %v, want an ACK timeout", err)
				}
			}
		})
	}
}

func TestTailUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--count", "-1"},
		{"--count", "x"},
		{"--include", "("},
		{"--exclude", "[z-a]"},
		{"--max-message-size", "0"},
		{"--max-message-size", "-2"},
		{"extra"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if res := runCLI(t, nil, append([]string{"tail"}, args...)...); res.code != exitUsage {
				t.Errorf("exit %d, want %d", res.code, exitUsage)
			}
		})
	}
}

func TestPrettyPrinter(t *testing.T) {
	t.Parallel()
	v, err := gilmsg.DecodeJSON([]byte(`{"b":[1,2.50,true,null,{}],"a":"caf\u00e9 \"q\" \\ \t\u0001\u2028\ud83d\ude00","c":[],"d":"\ud800\u00e9"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    prettyPrinter
		want string
	}{
		{"compact", prettyPrinter{},
			`{"a":"café \"q\" \\ \t\u0001\u2028😀","b":[1,2.5,true,null,{}],"c":[],"d":"\ud800\u00e9"}`},
		{"indented", prettyPrinter{indent: " "},
			"{\n \"a\": \"café \\\"q\\\" \\\\ \\t\\u0001\\u2028😀\",\n \"b\": [\n  1,\n  2.5,\n  true,\n  null,\n  {}\n ],\n \"c\": [],\n \"d\": \"\\ud800\\u00e9\"\n}"},
		{"coloured", prettyPrinter{color: true},
			"{" + ansiKey + `"a"` + ansiReset + ":" + ansiString + `"café \"q\" \\ \t\u0001\u2028😀"` + ansiReset + "," +
				ansiKey + `"b"` + ansiReset + ":[" + ansiNumber + "1" + ansiReset + "," + ansiNumber + "2.5" + ansiReset + "," +
				ansiLiteral + "true" + ansiReset + "," + ansiLiteral + "null" + ansiReset + ",{}]," +
				ansiKey + `"c"` + ansiReset + ":[]," + ansiKey + `"d"` + ansiReset + ":" + ansiString + `"\ud800\u00e9"` + ansiReset + "}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.p.value(&b, v, 0); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

// --really-pretty prints what Python's fedmsg-tail --really-pretty prints
// (before pygments colours it), judged by Python itself:
// testdata/tail/really-pretty.jsonl, written by really_pretty.py there.
func TestReallyPrettyMatchesPython(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../testdata/tail/really-pretty.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	p := prettyPrinter{indent: "  ", ascii: true}
	n := 0
	for _, line := range lines(string(data)) {
		var c struct{ Name, Body, Pretty string }
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		env, err := gilmsg.ParseEnvelope([]byte(c.Body))
		if err != nil {
			continue // not an envelope: tail drops it before printing
		}
		n++
		got, err := p.envelope(&gilmsg.Message{Envelope: env})
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if string(got) == c.Pretty {
			continue
		}
		// Python keeps the key order a message arrives in; fedmsg
		// publishers send it sorted, and tail prints it sorted.
		var a, b any
		if c.Name != "wire/non-canonical-layout" || json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(c.Pretty), &b) != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: got\n%s\nPython printed\n%s", c.Name, got, c.Pretty)
		}
	}
	if n < 20 {
		t.Errorf("only %d envelopes compared", n)
	}
}
