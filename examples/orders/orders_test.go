package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// TestOrdersAndRestartedTail runs the service and the tail each in its
// own process, with a billing bus in the test: big orders are 202
// while billing ACKs and 503 naming it when it is gone, and a tail killed
// (SIGKILL) in the middle and started again prints every order, each at
// most twice (the one it was handling when killed).
func TestOrdersAndRestartedTail(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()

	pki, err := devpki.New(filepath.Join(dir, "pki"), devpki.Options{Hosts: []string{"shop01", "billing01"}, KeyBits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(dir, "fedmsg.d")
	statusDir := filepath.Join(dir, "status")
	for _, d := range []string{confDir, statusDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shopEP, billingEP, replayEP := freeAddr(t), freeAddr(t), freeAddr(t)
	if err := pki.WriteConfig(filepath.Join(confDir, "10-bus.json"), map[string][]string{
		"shop01": {shopEP}, "billing01": {billingEP},
	}); err != nil {
		t.Fatal(err)
	}
	keys, _ := json.Marshal(map[string]any{
		"persistent_store": "sqlite:///" + filepath.Join(dir, "store.db"),
		"status_directory": statusDir,
		"replay_endpoints": map[string]string{"shop01": replayEP},
	})
	if err := os.WriteFile(filepath.Join(confDir, "20-orders.json"), keys, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// billing01: a bus in the test that ACKs what it tails.
	cfg, err := gilmsg.LoadConfig(confDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "billing01"
	billing, err := gilmsg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	billingCtx, stopBilling := context.WithCancel(ctx)
	billingDone := make(chan struct{})
	go func() {
		defer close(billingDone)
		for range billing.Tail(billingCtx, billing.FullTopic("orders", "")) {
		}
	}()
	defer func() { stopBilling(); <-billingDone; billing.Close() }()

	service := startProgram(t, "serve", "-config", confDir, "-listen", "127.0.0.1:0", "-ack-timeout", "500ms")
	line := service.waitLine(t, regexp.MustCompile(`listening on (http://\S+)`))
	url := regexp.MustCompile(`http://\S+`).FindString(line) + "/orders"
	post := func(id string, amount int) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"id":%q,"amount":%d}`, id, amount)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tail := startProgram(t, "tail", "-config", confDir)
	// The first run has no checkpoint yet, so it starts live: orders go
	// until one reaches it.
	for i := 0; ; i++ {
		if code, body := post(fmt.Sprintf("warm-%d", i), 1); code != http.StatusAccepted {
			t.Fatalf("warm-up order: %d %s", code, body)
		}
		if tail.seen("order warm-") > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the tail printed no warm-up order")
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Logf("%v: warmed up", time.Since(start))
	var want []string
	publish := func(from, to int, big bool) {
		for i := from; i <= to; i++ {
			id := fmt.Sprintf("o-%d", i)
			amount := 10
			if big && i%3 == 0 {
				amount = 5000 // big: billing01 must ACK
			}
			if code, body := post(id, amount); code != http.StatusAccepted {
				t.Fatalf("order %s: %d %s", id, code, body)
			}
			want = append(want, id)
		}
	}
	publish(1, 10, true)
	t.Logf("%v: 10 orders", time.Since(start))
	tail.kill(t)
	publish(11, 20, true) // while the tail is down

	// Billing goes away: a big order is answered 503 naming it. It was
	// still stored and sent, so the tail gets it.
	stopBilling()
	<-billingDone
	billing.Close()
	code, body := post("o-big-unacked", 5000)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "billing01") {
		t.Fatalf("big order without billing: %d %q, want 503 naming billing01", code, body)
	}
	want = append(want, "o-big-unacked")

	tail2 := startProgram(t, "tail", "-config", confDir)
	publish(21, 25, false) // billing01 is gone
	all := func() string { return tail.output() + tail2.output() }
	for _, id := range want {
		for !strings.Contains(all(), "order "+id+"\n") {
			if ctx.Err() != nil {
				t.Fatalf("order %s never printed; tail output:\n%s", id, all())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	dups := 0
	for _, id := range want {
		switch n := strings.Count(all(), "order "+id+"\n"); {
		case n > 2:
			t.Errorf("order %s printed %d times", id, n)
		case n == 2:
			dups++
		}
	}
	if dups > 1 {
		t.Errorf("%d orders printed twice; a kill repeats at most the one being handled", dups)
	}
	t.Logf("%v: all printed", time.Since(start))
	tail2.stop(t)
	service.stop(t)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "tcp://" + ln.Addr().String()
}

// TestMain runs the program itself when the test starts this test binary
// as a subprocess, as startProgram does: a real process to kill, without
// a go build.
func TestMain(m *testing.M) {
	if os.Getenv(programEnv) == "1" {
		if err := run(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "orders:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const programEnv = "ORDERS_TEST_PROGRAM"

// program is a started subprocess whose stdout is collected.
type program struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
}

// startProgram runs "orders args..." in a new process.
func startProgram(t *testing.T, args ...string) *program {
	t.Helper()
	p := &program{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), programEnv+"=1")
	p.cmd.Stderr = os.Stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			p.mu.Lock()
			p.out.WriteString(line)
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.cmd.Wait()
	})
	return p
}

func (p *program) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *program) seen(s string) int { return strings.Count(p.output(), s) }

func (p *program) waitLine(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindString(p.output()); m != "" {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s printed no line matching %s:\n%s", p.cmd.Path, re, p.output())
	return ""
}

func (p *program) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.cmd.Wait()
}

func (p *program) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("%s: %v", p.cmd.Path, err)
	}
}
