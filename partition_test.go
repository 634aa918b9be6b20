package gilmsg

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// A consumer on a test host of its own (netns_test.go's namespace and
// consumer process), with one direction of the link cut at a time: ACKs
// cut is a false negative, never a false positive; messages cut is a
// timeout; healed, publishes succeed again.
func TestPartition(t *testing.T) {
	h := newNetnsHost(t)
	n := newTestNet(t)
	cfg := n.config(pubCN)
	cfg.Endpoints[pubCN] = []string{"tcp://" + h.local + ":*"}
	pub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	ccfg := n.config(c1)
	ccfg.Endpoints = map[string][]string{pubCN: {pub.Endpoint()}, c1: {"tcp://" + h.remote + ":*"}}
	consumer := startConsumerProc(t, h.ns, ccfg)
	pub.cfg.Endpoints[c1] = []string{strings.Replace(consumer.endpoint, "0.0.0.0", h.remote, 1)}
	if err := pub.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	got := func(id string) bool { // whether the consumer reports id in time
		deadline := time.Now().Add(5 * time.Second)
		for consumer.count(id) == 0 {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}
	healthy := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool {
			r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(time.Second))
			if err != nil && !errors.Is(err, ErrAckTimeout) {
				t.Fatal(err)
			}
			return err == nil && got(r.MsgID)
		})
	}
	healthy("the first reliable publish across the link")

	// ACKs cut (the consumer's PUB cannot send), messages still flow.
	h.cut(t, false, portOf(consumer.endpoint))
	r, err := pub.Publish(ctxT(t), "job", map[string]any{"cut": "acks"}, WithRecipients(c1), WithAckTimeout(time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c1 {
		t.Fatalf("ACKs cut: err = %v, receipt %v; want a timeout naming %s", err, r, c1)
	}
	if !got(te.MsgID) {
		t.Fatal("ACKs cut: the message did not reach the consumer either")
	}
	h.heal(t)
	healthy("success again once the ACK path heals")

	// Messages cut (nothing from the publisher's PUB gets in): a timeout.
	h.cut(t, true, portOf(pub.Endpoint()))
	_, err = pub.Publish(ctxT(t), "job", map[string]any{"cut": "messages"}, WithRecipients(c1), WithAckTimeout(time.Second))
	if !errors.As(err, &te) || len(te.Missing) != 1 {
		t.Fatalf("messages cut: err = %v, want a timeout", err)
	}
	h.heal(t)
	healthy("success again once the message path heals")
}
