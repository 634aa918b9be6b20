package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// The tests of this file hold tail to its promise: a reliable message is
// ACKed only once its line has been written. The oracle is the
// publisher's own verdict (ACKed or timed out), nothing the tail says.

// A message that --include or --exclude drops is not ACKed: its reliable
// publish times out, while the messages printed around it are ACKed.
func TestTailFilteredNotAcked(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	for _, filter := range [][]string{{"--exclude", `drop$`}, {"--include", `keep$`}} {
		t.Run(filter[0], func(t *testing.T) {
			args := append([]string{"tail", "--config", n.withMe, "--name", tailCN, "--json", "--count", "2"}, filter...)
			_, _, done := startCLI(t, context.Background(), nil, args...)
			reliable := func(topic string, timeout time.Duration) error {
				_, err := n.pub.Publish(ctxFor(t), topic, nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(timeout))
				return err
			}
			// The first ACK proves the tail is listening; on one TCP
			// connection the second keep arrives after the drop, so when
			// it is ACKed the drop has been through the filter.
			if err := reliable("keep", 10*time.Second); err != nil {
				t.Fatalf("first keep: %v", err)
			}
			err := reliable("drop", time.Second)
			var te *gilmsg.AckTimeoutError
			if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != tailCN {
				t.Errorf("filtered message: %v, want an ACK timeout naming %s", err, tailCN)
			}
			if err := reliable("keep", 10*time.Second); err != nil {
				t.Fatalf("second keep: %v", err)
			}
			res := waitCLI(t, done)
			out := lines(res.stdout)
			if res.code != exitOK || len(out) != 2 || !strings.Contains(out[0], `"topic":"org.example.dev.test.keep"`) ||
				!strings.Contains(out[1], `"topic":"org.example.dev.test.keep"`) {
				t.Errorf("exit %d, stdout %q: want the two keeps", res.code, res.stdout)
			}
		})
	}
}

// An ACK that cannot be sent (here: tail01's key is not in certnames) is
// said once on stderr, naming its msg_id and why, and tail goes on
// printing; the publisher, which got no ACK, times out.
func TestTailAckErrorSaidOnce(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	tcfg := testConfig(n.pki)
	tcfg.Endpoints = map[string][]string{tailPubCN: {n.pub.Endpoint()}, tailCN: {n.tailEP}}
	delete(tcfg.Certnames, tailCN)
	tcfg.SignMessages = false
	_, errOut, done := startCLI(t, context.Background(), nil,
		"tail", "--config", writeConfig(t, tcfg), "--name", tailCN, "--json", "--count", "2")
	for i := range 2 {
		id := fmt.Sprintf("2026-tail-ack-%d", i)
		_, err := n.pub.Publish(ctxFor(t), "job", nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(time.Second), gilmsg.WithMsgID(id))
		if !errors.Is(err, gilmsg.ErrAckTimeout) {
			t.Fatalf("publish %d: %v, want an ACK timeout", i, err)
		}
		if i == 0 {
			waitOutput(t, errOut, id, nil)
		}
	}
	res := waitCLI(t, done)
	if res.code != exitOK || len(lines(res.stdout)) != 2 {
		t.Errorf("exit %d, stdout %q: want 0 and both lines", res.code, res.stdout)
	}
	if got := strings.Count(res.stderr, "cannot ACK"); got != 1 || !strings.Contains(res.stderr, "certnames") {
		t.Errorf("stderr %q: want the ACK error once, naming certnames", res.stderr)
	}
}

// errWriter fails every write, as a full disk does.
type errWriter struct{ syncBuffer }

func (*errWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A line that cannot be written is not ACKed, and tail exits 1 naming why.
func TestTailWriteErrorNotAcked(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	var errOut syncBuffer
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLIWith(t, context.Background(), nil, &errWriter{}, &errOut,
			"tail", "--config", n.withMe, "--name", tailCN)
	}()
	var errs []error
	res := publishUntil(t, done, func(int) {
		_, err := n.pub.Publish(context.Background(), "job", nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(50*time.Millisecond))
		errs = append(errs, err)
	})
	if res.code != exitFailure || !strings.Contains(res.stderr, "writing to stdout: no space left on device") {
		t.Errorf("exit %d, stderr %q: want 1 and the write error", res.code, res.stderr)
	}
	for _, err := range errs {
		if !errors.Is(err, gilmsg.ErrAckTimeout) {
			t.Errorf("publish: %v, want an ACK timeout: the line was never written", err)
		}
	}
}

// TestHelperCLIProcess is not a test: the tests below start the test
// binary again with GILMSG_CLI_ARGS set, to run gilmsg as a process with a
// real stdout.
func TestHelperCLIProcess(t *testing.T) {
	args := os.Getenv("GILMSG_CLI_ARGS")
	if args == "" {
		t.Skip("run as a process by other tests")
	}
	os.Exit(run(strings.Split(args, "\n")))
}

// cliProcess starts gilmsg as a process whose stdout is the given file;
// exited is closed when it has ended, and cmd.ProcessState is set.
func cliProcess(t *testing.T, stdout *os.File, args ...string) (cmd *exec.Cmd, stderr *syncBuffer, exited <-chan struct{}) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &syncBuffer{}
	cmd = exec.Command(exe, "-test.run=^TestHelperCLIProcess$")
	// Its own HOME and directory keep the machine's config out, as
	// runCLIWith does for a run in this process.
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GILMSG_CLI_ARGS="+strings.Join(args, "\n"))
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd, stderr, done
}

// When the reader of tail's stdout goes away ("gilmsg tail | head -1"),
// tail exits quietly with 0, as its help says, not 141 from SIGPIPE; and
// the message it could not write is not ACKed.
func TestTailClosedPipe(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr, exited := cliProcess(t, w, "tail", "--config", n.withMe, "--name", tailCN)
	w.Close()
	if _, err := n.pub.Publish(ctxFor(t), "first", nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(20*time.Second)); err != nil {
		t.Fatalf("first: %v; stderr %q", err, stderr.String())
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, "org.example.dev.test.first") {
		t.Fatalf("read %q, %v", line, err)
	}
	r.Close() // what head does after its line
	_, err = n.pub.Publish(ctxFor(t), "second", nil, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(time.Second))
	if !errors.Is(err, gilmsg.ErrAckTimeout) {
		t.Errorf("second: %v, want an ACK timeout: nobody read it", err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("tail still runs after its stdout closed; stderr %q", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != exitOK || stderr.String() != "" {
		t.Errorf("exit status %v, stderr %q: want 0, quietly", cmd.ProcessState, stderr.String())
	}
}

// waitCLI waits for a command started with startCLI to end.
func waitCLI(t *testing.T, done <-chan cliResult) cliResult {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("the command did not end within 20s")
	}
	return cliResult{}
}

// A message over --max-message-size costs its sender the connection; tail
// says so on stderr, naming the limit, and goes on with what follows.
func TestTailOversizedSaysSo(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut, done := startCLI(t, ctx, nil, "tail", "--config", n.config, "--max-message-size", "4096")
	big := strings.Repeat("x", 8192)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(errOut.String(), "max_message_size=4096") || !strings.Contains(out.String(), "org.example.dev.test.small") {
		if !strings.Contains(errOut.String(), "max_message_size=4096") {
			if _, err := n.pub.Publish(context.Background(), "big", map[string]any{"pad": big}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := n.pub.Publish(context.Background(), "small", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
		case res := <-done:
			t.Fatalf("tail ended: exit %d, stderr %q", res.code, res.stderr)
		case <-deadline:
			t.Fatalf("stdout %q, stderr %q: want the oversized message reported and the small ones printed", out.String(), errOut.String())
		}
	}
	cancel()
	res := waitCLI(t, done)
	if res.code != exitOK || strings.Contains(res.stdout, "org.example.dev.test.big") || !strings.Contains(res.stderr, "broke the protocol") {
		t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// When nobody reads tail's stdout (a stopped pager, a full pipe), its
// write blocks: the message being written is not ACKed, the first SIGTERM
// cannot end the loop, and a second one ends the process at once.
func TestTailBlockedStdoutSecondSignal(t *testing.T) {
	t.Parallel()
	n := newTailNet(t, nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd, stderr, exited := cliProcess(t, w, "tail", "--config", n.withMe, "--name", tailCN)
	w.Close()
	// Fill the pipe: the first ACK proves tail is listening, and each
	// message is bigger than the pipe can hold.
	pad := strings.Repeat("x", 128<<10)
	if _, err := n.pub.Publish(ctxFor(t), "first", map[string]any{"pad": "-"}, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(20*time.Second)); err != nil {
		t.Fatalf("first: %v; stderr %q", err, stderr.String())
	}
	_, err = n.pub.Publish(ctxFor(t), "blocked", map[string]any{"pad": pad}, gilmsg.WithRecipients(tailCN), gilmsg.WithAckTimeout(time.Second))
	if !errors.Is(err, gilmsg.ErrAckTimeout) {
		t.Errorf("a message whose line could not be written: %v, want an ACK timeout", err)
	}
	for range 2 {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			continue // the first one is expected to leave it blocked
		}
		break
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("tail still runs after two SIGTERMs")
	}
}
