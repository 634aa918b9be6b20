package gilmsg

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests put a consumer on a test host of its own: a network
// namespace joined to the test's by a veth pair whose addresses exist only
// on that pair, so no traffic leaves the machine. Goroutines cannot easily
// live in another namespace, so the consumer is this test binary
// re-executed there (TestHelperConsumerProcess). A firewall inside the
// namespace (iptables, else nft) cuts the link, one direction or both; TCP
// holds what it could not deliver and retransmits it once the cut heals,
// as across a real partition.
//
// TestPartition (partition_test.go) cuts each direction for longer than
// the ACK timeout; these check what happens around it: a partition shorter
// than the timeout, and what arrives once a longer one heals.

const helperConsumerEnv = "GILMSG_HELPER_CONSUMER_CONFIG"

// TestHelperConsumerProcess is a consumer in a process of its own: only
// when a test re-executes the binary with helperConsumerEnv naming a config
// file. It prints "endpoint <addr>", "ready" once subscribed to everything,
// then "got <msg_id>" for each message it yields, and ACKs a message only
// after printing it, so that an ACK always means the application had it.
// It ends when its stdin closes (its parent went away) or it is killed.
func TestHelperConsumerProcess(t *testing.T) {
	path := os.Getenv(helperConsumerEnv)
	if path == "" {
		t.Skip("the consumer process of the netns and crash tests; runs only when they re-execute the test binary")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(data, "json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fmt.Println("endpoint", b.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	sub, err := b.Subscribe(ctx, "", WithManualAck())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	fmt.Println("ready")
	for m, err := range sub.Messages(ctx) {
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("got", m.MsgID)
		if err := m.Ack(ctx); err != nil {
			fmt.Println("error", err)
		}
	}
}

// consumerProc is a running TestHelperConsumerProcess, with what it has
// reported so far.
type consumerProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	endpoint string
	done     chan struct{} // its stdout has closed: everything it printed is counted

	mu  sync.Mutex
	got map[string]int
}

// startConsumerProc runs the consumer with cfg, inside network namespace
// ns ("" for this one), and waits until it has subscribed. It is stopped
// when the test ends.
func startConsumerProc(t *testing.T, ns string, cfg *Config) *consumerProc {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "consumer-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{os.Args[0], "-test.run=^TestHelperConsumerProcess$", "-test.timeout=6m"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperConsumerEnv+"="+f.Name())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &consumerProc{cmd: cmd, stdin: stdin, done: make(chan struct{}), got: map[string]int{}}
	var waitOnce sync.Once
	wait := func() { waitOnce.Do(func() { stdin.Close(); <-p.done; cmd.Wait() }) }
	t.Cleanup(wait)
	endpoint, ready := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "endpoint "):
				endpoint <- strings.TrimPrefix(line, "endpoint ")
			case line == "ready":
				close(ready)
			case strings.HasPrefix(line, "got "):
				p.mu.Lock()
				p.got[strings.TrimPrefix(line, "got ")]++
				p.mu.Unlock()
			case strings.HasPrefix(line, "error "):
				t.Logf("consumer process: %s", line)
			}
		}
	}()
	for _, step := range []struct {
		what string
		ch   <-chan struct{}
	}{{"its endpoint", nil}, {"its subscription", ready}} {
		if step.ch == nil {
			select {
			case p.endpoint = <-endpoint:
				continue
			case <-p.done:
			case <-time.After(time.Minute):
			}
		} else {
			select {
			case <-step.ch:
				continue
			case <-p.done:
			case <-time.After(time.Minute):
			}
		}
		t.Fatalf("the consumer process did not report %s", step.what)
	}
	return p
}

// count is how many times the process has reported msgID.
func (p *consumerProc) count(msgID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[msgID]
}

// kill ends the process without letting it close anything, as a crash
// does, and waits until everything it printed has been read.
func (p *consumerProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.cmd.Wait()
}

// netnsHost is a network namespace joined to the test's by a veth pair.
type netnsHost struct {
	ns            string
	dev           string // the pair's end inside the namespace
	local, remote string // our address, the namespace's
	firewall      string // "iptables" or "nft"
}

var netnsSeq atomic.Int32

// newNetnsHost makes the namespace, or skips the test saying why it
// cannot; the namespace and the pair are removed when the test ends.
func newNetnsHost(t *testing.T) *netnsHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to create a network namespace")
	}
	h := &netnsHost{}
	for _, fw := range []string{"iptables", "nft"} {
		if _, err := exec.LookPath(fw); err == nil {
			h.firewall = fw
			break
		}
	}
	if h.firewall == "" {
		t.Skip("needs iptables or nft to cut the link (make deps installs iptables as root)")
	}
	// Names and a /30 of 10.213.0.0/16 of our own: the pid keeps
	// concurrent test binaries apart, the sequence this binary's tests.
	pid, seq := os.Getpid(), int(netnsSeq.Add(1))
	h.ns = fmt.Sprintf("gilmsg-netns-%d-%d", pid, seq)
	hostDev, nsDev := fmt.Sprintf("gmn%05d%da", pid%100000, seq%10), fmt.Sprintf("gmn%05d%db", pid%100000, seq%10)
	h.dev = nsDev
	octet, base := pid%250, 4*(1+seq%60)
	h.local, h.remote = fmt.Sprintf("10.213.%d.%d", octet, base+1), fmt.Sprintf("10.213.%d.%d", octet, base+2)
	if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", h.ns).Run()
		exec.Command("ip", "link", "del", hostDev).Run()
	})
	runCmd(t, "ip", "link", "add", hostDev, "type", "veth", "peer", "name", nsDev)
	runCmd(t, "ip", "link", "set", nsDev, "netns", h.ns)
	runCmd(t, "ip", "addr", "add", h.local+"/30", "dev", hostDev)
	runCmd(t, "ip", "link", "set", hostDev, "up")
	h.exec(t, "ip", "addr", "add", h.remote+"/30", "dev", nsDev)
	h.exec(t, "ip", "link", "set", nsDev, "up")
	h.exec(t, "ip", "link", "set", "lo", "up")
	if h.firewall == "nft" {
		h.exec(t, "nft", "add", "table", "inet", "gilmsg")
		h.exec(t, "nft", "add", "chain", "inet", "gilmsg", "in", "{", "type", "filter", "hook", "input", "priority", "0", ";", "}")
		h.exec(t, "nft", "add", "chain", "inet", "gilmsg", "out", "{", "type", "filter", "hook", "output", "priority", "0", ";", "}")
	}
	return h
}

func (h *netnsHost) exec(t *testing.T, args ...string) {
	t.Helper()
	runCmd(t, append([]string{"ip", "netns", "exec", h.ns}, args...)...)
}

// cut drops, at the namespace's end of the pair, the TCP segments coming
// in (in) or going out, from source port sport ("" for all).
func (h *netnsHost) cut(t *testing.T, in bool, sport string) {
	t.Helper()
	if h.firewall == "iptables" {
		rule := []string{"iptables", "-A", "OUTPUT", "-o", h.dev, "-p", "tcp"}
		if in {
			rule = []string{"iptables", "-A", "INPUT", "-i", h.dev, "-p", "tcp"}
		}
		if sport != "" {
			rule = append(rule, "--sport", sport)
		}
		h.exec(t, append(rule, "-j", "DROP")...)
		return
	}
	rule := []string{"nft", "add", "rule", "inet", "gilmsg", "out", "oifname", h.dev}
	if in {
		rule = []string{"nft", "add", "rule", "inet", "gilmsg", "in", "iifname", h.dev}
	}
	if sport != "" {
		rule = append(rule, "tcp", "sport", sport)
	} else {
		rule = append(rule, "meta", "l4proto", "tcp")
	}
	h.exec(t, append(rule, "drop")...)
}

// heal removes every cut.
func (h *netnsHost) heal(t *testing.T) {
	t.Helper()
	if h.firewall == "iptables" {
		h.exec(t, "iptables", "-F", "INPUT")
		h.exec(t, "iptables", "-F", "OUTPUT")
		return
	}
	h.exec(t, "nft", "flush", "chain", "inet", "gilmsg", "in")
	h.exec(t, "nft", "flush", "chain", "inet", "gilmsg", "out")
}

func portOf(endpoint string) string { return endpoint[strings.LastIndexByte(endpoint, ':')+1:] }

// Partitions between a publisher here and a consumer on the other host:
// one shorter than the ACK timeout costs nothing but time; one longer is
// reported, and what it held back arrives once afterwards, never counting
// as a late success.
func TestNetnsPartitionHeals(t *testing.T) {
	h := newNetnsHost(t)
	n := newTestNet(t)
	cfg := n.config(pubCN)
	cfg.Endpoints[pubCN] = []string{"tcp://" + h.local + ":*"}
	pub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ccfg := n.config(c1)
	ccfg.Endpoints = map[string][]string{pubCN: {pub.Endpoint()}, c1: {"tcp://" + h.remote + ":*"}}
	proc := startConsumerProc(t, h.ns, ccfg)
	pub.cfg.Endpoints[c1] = []string{strings.Replace(proc.endpoint, "0.0.0.0", h.remote, 1)}
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	// exactlyOnce checks that the consumer's application saw id once, after
	// everything sent before a marker has arrived (one TCP stream, in order).
	exactlyOnce := func(t *testing.T, id string) {
		t.Helper()
		marker, err := pub.Publish(ctxT(t), "marker", nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the marker", func() bool { return proc.count(marker.MsgID) == 1 })
		if c := proc.count(id); c != 1 {
			t.Fatalf("the consumer's application saw %s %d times", id, c)
		}
	}
	if r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatalf("across the link before any cut: %v", err)
	} else {
		exactlyOnce(t, r.MsgID)
	}

	t.Run("shorter than the timeout, both directions", func(t *testing.T) {
		resends := pub.Stats().Resends
		h.cut(t, true, "")
		h.cut(t, false, "")
		type result struct {
			r   *Receipt
			err error
		}
		res := make(chan result, 1)
		go func() {
			r, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "both"}, WithRecipients(c1), WithAckTimeout(20*time.Second))
			res <- result{r, err}
		}()
		// About a second of partition: the fallback resend, which comes
		// after zmq_reconnect_ivl_max, has gone into it.
		waitFor(t, "a resend during the partition", func() bool { return pub.Stats().Resends >= resends+1 })
		h.heal(t)
		got := <-res
		if got.err != nil {
			t.Fatalf("the partition healed within the timeout, yet: %v", got.err)
		}
		exactlyOnce(t, got.r.MsgID)
	})

	t.Run("messages held past the timeout", func(t *testing.T) {
		late := pub.Stats().AcksRejected[ackRejectUnknownID]
		matched := pub.Stats().AcksMatched
		h.cut(t, true, portOf(pub.Endpoint()))
		_, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "messages"}, WithRecipients(c1), WithAckTimeout(time.Second))
		var te *AckTimeoutError
		if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c1 {
			t.Fatalf("err = %v, want a timeout naming %s", err, c1)
		}
		if c := proc.count(te.MsgID); c != 0 {
			t.Fatalf("the consumer saw a message sent during the cut %d times before the heal", c)
		}
		h.heal(t)
		// TCP delivers what it held: the message, once for the
		// application however many resends it held, and ACKs that come
		// too late to count.
		waitFor(t, "the held message", func() bool { return proc.count(te.MsgID) >= 1 })
		waitFor(t, "the late ACKs", func() bool { return pub.Stats().AcksRejected[ackRejectUnknownID] > late })
		exactlyOnce(t, te.MsgID)
		if m := pub.Stats().AcksMatched; m != matched {
			t.Fatalf("a late ACK counted: %d matched, %d before", m, matched)
		}
		if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
			t.Fatalf("after the heal: %v", err)
		}
	})
}
