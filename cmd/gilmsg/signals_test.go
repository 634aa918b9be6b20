package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/announce"
)

// waitOutput polls buf until it contains want.
func waitOutput(t *testing.T, buf *syncBuffer, want string, meanwhile func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", want, buf.String())
		}
		if meanwhile != nil {
			meanwhile()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// signalSelf sends sig to this process. Only call it while a command under
// test is listening for sig, or the test binary dies of it.
func signalSelf(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
}

func TestTailSIGHUPReloadsTheCRL(t *testing.T) {
	n := newTailNet(t, nil)
	out, stderr, done := startCLI(t, context.Background(), nil, "tail", "--config", n.config, "--json")
	publish := func() {
		if _, err := n.pub.Publish(context.Background(), "tick", nil); err != nil {
			t.Errorf("publish: %v", err)
		}
	}
	// A printed message: tail is past the point where it listens for SIGHUP.
	waitOutput(t, out, `"signer":"publisher01"`, publish)
	if err := n.pki.Revoke(tailPubCN); err != nil {
		t.Fatal(err)
	}
	signalSelf(t, syscall.SIGHUP)
	waitOutput(t, stderr, "SIGHUP: reloaded the CA and CRL", nil)
	waitOutput(t, stderr, "revoked", publish)
	select {
	case res := <-done:
		t.Fatalf("tail ended: %d %q", res.code, res.stderr)
	default:
	}
}

// SIGTERM stops each long-running command cleanly: exit 0, its sockets
// closed (the goroutine check), having said so where it says anything.
func TestSIGTERMStopsLongRunningCommands(t *testing.T) {
	pki := devPKI(t, tailPubCN)
	cfg := testConfig(pki)
	cfg.RelayInbound = []string{freePort(t)}
	cfg.Endpoints = map[string][]string{"relay_outbound": {freePort(t)}}
	cfg.Certnames[announce.SigningRelayName] = tailPubCN
	config := writeConfig(t, cfg)
	for _, tc := range []struct {
		args      []string
		running   string // on stderr once it listens for signals
		stoppedTo string
	}{
		{[]string{"relay"}, "outbound", "stopped; forwarded"},
		{[]string{"signing-relay"}, "signing as", "stopped; forwarded"},
		{[]string{"gateway", "--bind", "tcp://127.0.0.1:*"}, "publishing at", "stopped; forwarded"},
		{[]string{"trigger", "--command", "true"}, "for each message", ""},
		{[]string{"tail", "--metrics-addr", "127.0.0.1:0"}, "metrics at", ""},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			_, stderr, done := startCLI(t, context.Background(), nil, append(tc.args, "--config", config)...)
			waitOutput(t, stderr, tc.running, nil)
			signalSelf(t, syscall.SIGTERM)
			select {
			case res := <-done:
				if res.code != exitOK || !strings.Contains(res.stderr, tc.stoppedTo) {
					t.Errorf("exit %d, stderr %q", res.code, res.stderr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("still running 10s after SIGTERM")
			}
		})
	}
}
