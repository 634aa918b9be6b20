package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/hubstatus"
)

// reportEvery publishes report on a PUB bound at endpoint every few
// milliseconds until the test ends, as a hub's monitoring producer does.
func reportEvery(t *testing.T, endpoint string, report []byte) {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := zctx.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	pub.SetLinger(sendLinger)
	if err := pub.Bind(endpoint); err != nil {
		t.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			pub.SendBytes(report, 0)
			select {
			case <-quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(quit)
		<-done
		pub.Close()
		zctx.Term()
	})
}

// What fedmsg-check prints for a report: testdata/check/report.out, made
// by Python's json.dumps (make_fixtures.py), and its tests' messages.
func TestCheckAsFedmsgCheck(t *testing.T) {
	t.Parallel()
	report, err := os.ReadFile("../../testdata/check/report.json")
	if err != nil {
		t.Fatal(err)
	}
	pretty, err := os.ReadFile("../../testdata/check/report.out")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "monitor")
	reportEvery(t, endpoint, report)
	cfg := gilmsg.DefaultConfig()
	config := writeConfigWith(t, cfg, map[string]any{hubstatus.SocketKey: endpoint})

	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"all", nil, exitOK, "No consumers or producers specified so all will be shown.\n" + string(pretty), ""},
		{"active", []string{"-c", "TestConsumer", "--producer", "MonitoringProducer"}, exitOK,
			"All consumers and producers are active!\n" + string(pretty), ""},
		{"missing", []string{"-c", "TestConsumer", "--consumer", "MissingConsumer", "-p", "Nope"}, exitFailure, "",
			"\"MissingConsumer\" is not active!\n\"Nope\" is not active!\nError: Some consumers and/or producers are missing!\n"},
		{"uninitialized", []string{"-c", "SleepyConsumer"}, exitFailure, "",
			"\"SleepyConsumer\" is not initialized!\nError: Some consumers and/or producers are uninitialized!\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, nil, append([]string{"check", "--config", config}, tc.args...)...)
			if res.code != tc.code || res.stdout != tc.stdout || res.stderr != tc.stderr {
				t.Errorf("exit %d, stdout\n%s\nstderr %q\nwant exit %d, stdout\n%s\nstderr %q", res.code, res.stdout, res.stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestCheckFailures(t *testing.T) {
	t.Parallel()
	res := runCLI(t, nil, "check", "--config", writeConfig(t, gilmsg.DefaultConfig()))
	if want := "Error: No monitoring endpoint has been configured: please set \"moksha.monitoring.socket\"\n"; res.code != exitFailure || res.stderr != want {
		t.Errorf("no endpoint: exit %d, stderr %q", res.code, res.stderr)
	}
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "nobody")
	cfg := gilmsg.DefaultConfig()
	res = runCLI(t, nil, "check", "--config", writeConfigWith(t, cfg, map[string]any{hubstatus.SocketKey: endpoint}), "--timeout", "0.2")
	if want := "Error: Failed to receive message from the monitoring endpoint (" + endpoint + ") in 0.2 seconds.\n"; res.code != exitFailure || res.stderr != want {
		t.Errorf("no hub: exit %d, stderr %q", res.code, res.stderr)
	}
	reportEvery(t, endpoint, []byte(`{"consumers": "not a list"`))
	res = runCLI(t, nil, "check", "--config", writeConfigWith(t, cfg, map[string]any{hubstatus.SocketKey: endpoint}))
	if res.code != exitFailure || !strings.Contains(res.stderr, "hub status") {
		t.Errorf("junk report: exit %d, stderr %q", res.code, res.stderr)
	}
}

type namedConsumer struct{}

func (namedConsumer) Name() string  { return "BodhiConsumer" }
func (namedConsumer) Topic() string { return "org.example.dev.test" }
func (namedConsumer) Consume(context.Context, *gilmsg.Message) error {
	return nil
}

// A Go hub: RunConsumers publishes the status that check reads.
func TestCheckGoHub(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "monitor")
	hcfg := testConfig(n.pki)
	hcfg.Endpoints = map[string][]string{tailPubCN: {n.pub.Endpoint()}}
	hcfg.Extra = map[string]any{hubstatus.SocketKey: endpoint}
	hub := newBus(t, hcfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- hub.RunConsumers(ctx, []gilmsg.Consumer{namedConsumer{}}, gilmsg.WithStatusInterval(20*time.Millisecond))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunConsumers: %v", err)
		}
	}()
	res := runCLI(t, nil, "check", "--config", writeConfigWith(t, hcfg, hcfg.Extra), "-c", "BodhiConsumer", "-p", "MonitoringProducer")
	if res.code != exitOK || !containsAll(res.stdout, "All consumers and producers are active!", `"name": "BodhiConsumer"`, `"topic": [`) {
		t.Errorf("exit %d, stdout %s, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
