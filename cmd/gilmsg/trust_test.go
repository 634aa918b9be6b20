package main

import (
	"strings"
	"testing"
)

// A logger that would sign with a certificate receivers refuse stops at
// once with status 1, naming the certificate and what is wrong with it:
// signing every message (sign_messages) or only reliable ones.
func TestLoggerRefusesUnusableCertificate(t *testing.T) {
	isolateConfigSources(t)
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
