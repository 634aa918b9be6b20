package main

import (
	"errors"
	"os"
	"regexp"
	"testing"
)

func TestDemo(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	res := runCLI(t, nil, "demo", "--key-bits", "1024")
	if res.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  consumer01 received: .* org\.example\.dev\.demo\.hello publisher \{"step":1,`),
		regexp.MustCompile(`(?m)^  consumer02 received: .* org\.example\.dev\.demo\.hello publisher \{"step":1,`),
		regexp.MustCompile(`(?m)^  ACK from consumer01 after \S+\.$`),
		regexp.MustCompile(`(?m)^  ACK from consumer02 after \S+\.$`),
		regexp.MustCompile(`(?m)^  consumer01 received: .*\{"step":2,`),
		regexp.MustCompile(`(?m)^  Publish failed as it should: gilmsg: no ACK from consumer02 for `),
		regexp.MustCompile(`(?m)^Publisher's counters: 2 reliable publishes, 1 ACKed by all, 1 timed out, `),
	} {
		if !want.MatchString(res.stdout) {
			t.Errorf("output lacks %s:\n%s", want, res.stdout)
		}
	}
	if regexp.MustCompile(`consumer02 received: .*"step":2`).MatchString(res.stdout) {
		t.Errorf("consumer02 received the second message after it stopped:\n%s", res.stdout)
	}
	dir := regexp.MustCompile(`throwaway PKI in (\S+) `).FindStringSubmatch(res.stdout)
	if dir == nil {
		t.Fatalf("no temp dir named in:\n%s", res.stdout)
	}
	if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s left behind (stat: %v)", dir[1], err)
	}
}
