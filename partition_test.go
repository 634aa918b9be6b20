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
	"testing"
	"time"
)

// The partition test puts a consumer on a test host of its own: a network
// namespace joined to this one by a veth pair, with addresses that exist
// only on that pair. The consumer runs as this test binary re-executed in
// the namespace (TestPartitionConsumerProcess); iptables in the namespace
// cuts one direction at a time.

const partitionEnv = "GILMSG_PARTITION_CONSUMER_CONFIG"

func runCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// testHost makes the namespace and returns its name and the two
// addresses (ours, the namespace's); it is removed when the test ends.
func testHost(t *testing.T) (ns, local, remote string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make test installs iptables when it runs as root)", tool)
		}
	}
	id := os.Getpid() % 250
	ns = fmt.Sprintf("gilmsg-test-%d", os.Getpid())
	hostSide, nsSide := fmt.Sprintf("gmv%da", os.Getpid()%100000), fmt.Sprintf("gmv%db", os.Getpid()%100000)
	local, remote = fmt.Sprintf("10.213.%d.1", id), fmt.Sprintf("10.213.%d.2", id)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", ns).Run()
		exec.Command("ip", "link", "del", hostSide).Run()
	})
	runCmd(t, "ip", "link", "add", hostSide, "type", "veth", "peer", "name", nsSide)
	runCmd(t, "ip", "link", "set", nsSide, "netns", ns)
	runCmd(t, "ip", "addr", "add", local+"/30", "dev", hostSide)
	runCmd(t, "ip", "link", "set", hostSide, "up")
	runCmd(t, "ip", "netns", "exec", ns, "ip", "addr", "add", remote+"/30", "dev", nsSide)
	runCmd(t, "ip", "netns", "exec", ns, "ip", "link", "set", nsSide, "up")
	runCmd(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	return ns, local, remote
}

// TestPartitionConsumerProcess is the consumer on the other host: only
// when re-executed by TestPartition. It prints its endpoint, then the
// msg_id of each message it yields (after ACKing it).
func TestPartitionConsumerProcess(t *testing.T) {
	path := os.Getenv(partitionEnv)
	if path == "" {
		t.Skip("the consumer half of TestPartition; runs only when it re-executes the test binary")
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
	fmt.Println(b.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }() // ends with its parent
	for m, err := range b.Tail(ctx, "") {
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("got", m.MsgID)
	}
}

func TestPartition(t *testing.T) {
	ns, local, remote := testHost(t)
	n := newTestNet(t)
	cfg := n.config(pubCN)
	cfg.Endpoints[pubCN] = []string{"tcp://" + local + ":*"}
	pub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	ccfg := n.config(c1)
	ccfg.Endpoints = map[string][]string{pubCN: {pub.Endpoint()}, c1: {"tcp://" + remote + ":*"}}
	path := t.TempDir() + "/consumer.json"
	data, err := json.Marshal(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestPartitionConsumerProcess$", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), partitionEnv+"="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var consumerEP string
	select {
	case consumerEP = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not start")
	}
	if !strings.HasPrefix(consumerEP, "tcp://") {
		t.Fatalf("consumer said %q", consumerEP)
	}
	pub.cfg.Endpoints[c1] = []string{strings.Replace(consumerEP, "0.0.0.0", remote, 1)}
	port := consumerEP[strings.LastIndexByte(consumerEP, ':')+1:]
	pubPort := pub.Endpoint()[strings.LastIndexByte(pub.Endpoint(), ':')+1:]
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	got := func(id string) bool { // whether the consumer has reported id
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l := <-lines:
				if l == "got "+id {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	healthy := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool {
			r, err := pub.Publish(ctxT(t), "job", nil, Recipients(c1), AckTimeout(time.Second))
			if err != nil && !errors.Is(err, ErrAckTimeout) {
				t.Fatal(err)
			}
			return err == nil && got(r.MsgID)
		})
	}
	healthy("the first reliable publish across the link")

	// ACKs cut (the consumer's PUB cannot send), messages still flow: a
	// timeout naming the consumer, which did get the message — a false
	// negative, never a false positive.
	ipt := func(op, chain string, args ...string) {
		runCmd(t, append([]string{"ip", "netns", "exec", ns, "iptables", op, chain, "-p", "tcp"}, append(args, "-j", "DROP")...)...)
	}
	ipt("-A", "OUTPUT", "--sport", port)
	r, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "acks"}, Recipients(c1), AckTimeout(time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c1 {
		t.Fatalf("ACKs cut: err = %v, receipt %v; want a timeout naming %s", err, r, c1)
	}
	if !got(te.MsgID) {
		t.Fatal("ACKs cut: the message did not reach the consumer either")
	}
	ipt("-D", "OUTPUT", "--sport", port)
	healthy("success again once the ACK path heals")

	// Messages cut (nothing from the publisher's PUB gets in): a timeout.
	ipt("-A", "INPUT", "--sport", pubPort)
	_, err = pub.Publish(ctxT(t), "job", map[string]any{"cut": "messages"}, Recipients(c1), AckTimeout(time.Second))
	if !errors.As(err, &te) || len(te.Missing) != 1 {
		t.Fatalf("messages cut: err = %v, want a timeout", err)
	}
	ipt("-D", "INPUT", "--sport", pubPort)
	healthy("success again once the message path heals")
}
