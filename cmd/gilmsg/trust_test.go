package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A logger that would sign with a certificate receivers refuse stops at
// once with status 1, naming the certificate and what is wrong with it:
// signing every message (sign_messages) or only reliable ones.
func TestLoggerRefusesUnusableCertificate(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, "pub01")
	if err := pki.IssueExpired("old01"); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue("gone01"); err != nil {
		t.Fatal(err)
	}
	if err := pki.Revoke("gone01"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, certname string
		signAll        bool
		args           []string
		want           string
	}{
		{"expired, sign_messages", "old01", true, nil, "expired at"},
		{"revoked, sign_messages", "gone01", true, nil, "revoked by the CRL"},
		{"expired, reliable", "old01", false, []string{"--recipients", "pub01", "--ack-timeout", "1"}, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(pki)
			cfg.SignMessages = tc.signAll
			cfg.Endpoints = map[string][]string{tc.certname: {"tcp://127.0.0.1:*"}}
			args := append([]string{"logger", "--config", writeConfig(t, cfg), "--name", tc.certname, "--message", "hi"}, tc.args...)
			res := runCLI(t, nil, args...)
			if res.code != exitFailure {
				t.Errorf("exit %d, want %d; stderr %q", res.code, exitFailure, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.certname+".crt") || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr %q: want the certificate file and %q", res.stderr, tc.want)
			}
		})
	}
}

// A reliable logger whose CA or CRL is unusable exits 1 naming the file and
// what is wrong with it, instead of 3 ("no ACK") for ACKs it could not judge.
func TestLoggerReportsTrustProblems(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, "pub01")
	for _, tc := range []struct {
		name string
		set  func(cfg map[string]string)
		want []string
	}{
		{"missing CA", func(c map[string]string) { c["ca"] = filepath.Join(pki.Dir, "nope.crt") }, []string{"CA certificate", "nope.crt", "no such file"}},
		{"missing CRL", func(c map[string]string) { c["crl"] = filepath.Join(pki.Dir, "nope.pem") }, []string{"CRL", "nope.pem", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(pki)
			cfg.Endpoints = map[string][]string{"pub01": {"tcp://127.0.0.1:*"}}
			locs := map[string]string{"ca": cfg.CACertLocation, "crl": cfg.CRLLocation}
			tc.set(locs)
			cfg.CACertLocation, cfg.CRLLocation = locs["ca"], locs["crl"]
			res := runCLI(t, nil, "logger", "--config", writeConfig(t, cfg), "--name", "pub01", "--message", "hi",
				"--recipients", "someone", "--ack-timeout", "30")
			if res.code != exitFailure {
				t.Errorf("exit %d, want %d; stderr %q", res.code, exitFailure, res.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr %q does not say %q", res.stderr, w)
				}
			}
		})
	}
}

// A reliable logger stuck on an https:// CA that never answers stops at
// its SIGINT (here: its context), naming nothing it did not do.
func TestLoggerInterruptedDuringFetch(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
			accepted.Add(1)
		}
	}()
	defer ln.Close()
	pki := devPKI(t, "pub01")
	cfg := testConfig(pki)
	cfg.Endpoints = map[string][]string{"pub01": {"tcp://127.0.0.1:*"}}
	cfg.CACertLocation = "https://" + ln.Addr().String() + "/ca.crt"
	ctx, cancel := context.WithCancel(context.Background())
	_, errOut, done := startCLI(t, ctx, nil, "logger", "--config", writeConfig(t, cfg), "--name", "pub01",
		"--message", "hi", "--recipients", "someone", "--ack-timeout", "60")
	deadline := time.Now().Add(30 * time.Second)
	for accepted.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case res := <-done:
		if res.code != exitFailure || !strings.Contains(errOut.String(), "interrupted") {
			t.Errorf("exit %d, stderr %q: want %d, interrupted", res.code, errOut.String(), exitFailure)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the logger ignores its SIGINT while a CA download hangs")
	}
}
