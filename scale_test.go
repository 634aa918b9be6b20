package gilmsg

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// scaleChildEnv marks the fresh process in which a test counts threads
// (see inFreshProcess).
const scaleChildEnv = "GILMSG_SCALE_CHILD"

// inFreshProcess reports whether this is a fresh process of the test
// binary running only t; if not, it runs one and reports its result and
// output on t. A test that counts OS threads needs one: a test binary
// keeps every thread earlier tests made.
func inFreshProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(scaleChildEnv) != "" {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), scaleChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child process:\n%s", out)
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	return false
}

// TestSubscribeManyEndpoints subscribes once to 1,000 endpoints (XPUB
// sockets of one context in this process: cheap, and they say when each
// subscription has arrived), receives one message from each, none twice,
// and counts the OS threads of the process while the subscription waits.
// Before the subscription waited in Go's netpoller, each endpoint held a
// thread (its monitor's zmq_poll) and the context ran out of sockets at
// about 200.
func TestSubscribeManyEndpoints(t *testing.T) {
	if !inFreshProcess(t) {
		return
	}
	const n, maxThreads = 1000, 64
	zctx := testZCtx(t)
	pubs := make([]*zmq.Socket, n)
	addrs := make([]string, n)
	for i := range pubs {
		pubs[i] = testSocket(t, zctx, zmq.XPUB, testSockOpts())
		pubs[i].SetRcvtimeo(time.Minute)
		addrs[i] = bindLoopback(t, pubs[i])
	}
	cfg := DefaultConfig()
	cfg.ZMQReconnectIvl = 10
	b, err := New(cfg, WithReadyTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := waitCtx(t, 2*time.Minute)
	const prefix = "org.example.dev.scale."
	sub, err := b.Subscribe(ctx, prefix, WithEndpoints(addrs...), WithoutValidation(), WithoutAck())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	if sub.Ready() != n {
		t.Fatalf("Ready() = %d of %d endpoints", sub.Ready(), n)
	}
	for i, p := range pubs {
		frame, err := p.RecvBytes(0) // the subscription, "\x01" + prefix
		if err != nil || string(frame) != "\x01"+prefix {
			t.Fatalf("endpoint %d: subscription %q, %v", i, frame, err)
		}
	}
	for i, p := range pubs {
		topic := prefix + "m"
		body, err := MarshalCanonical(map[string]any{"topic": topic, "msg": i, "msg_id": strconv.Itoa(i), "i": 1, "timestamp": 0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.SendMessage(topic, body); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]bool, n)
	for len(seen) < n {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("%d of %d messages: %v", len(seen), n, err)
		}
		if seen[m.MsgID] {
			t.Fatalf("message %s twice", m.MsgID)
		}
		i, err := strconv.Atoi(m.MsgID)
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected msg_id %q", m.MsgID)
		}
		if want := addrs[i]; m.Endpoint != want {
			t.Fatalf("message %s from %s, sent from %s", m.MsgID, m.Endpoint, want)
		}
		seen[m.MsgID] = true
	}
	// Idle now: every goroutine of the bus waits, the reader too.
	idle, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	cpu0 := processCPU(t)
	if _, err := sub.Next(idle); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an idle bus: %v", err)
	}
	idleCPU := processCPU(t) - cpu0
	threads := procStatus(t, "Threads")
	fds := countFDs(t)
	t.Logf("%d endpoints: %d OS threads, %d file descriptors, %v CPU in 300 ms idle", n, threads, fds, idleCPU)
	if threads > maxThreads {
		t.Errorf("%d OS threads with %d endpoints, want at most %d", threads, n, maxThreads)
	}
}

// procStatus reads a numeric field of /proc/self/status.
func procStatus(t *testing.T, key string) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
