package gilmsg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAckTimeoutNamesRejectedAcks: a recipient written as a short name
// while its certificate's CN is the long one ACKs all the same; the error
// says who ACKed and why it did not count, not only "no ACK from".
func TestAckTimeoutNamesRejectedAcks(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	n.consumers(t, c1)
	_, err := pub.Publish(ctxT(t), "job", map[string]any{"n": 1}, WithRecipients("consumer01"), WithAckTimeout(3*time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("err %v, want an AckTimeoutError", err)
	}
	want := RejectedAck{Signer: c1, Reason: "not a recipient"}
	if len(te.Rejected) != 1 || te.Rejected[0] != want {
		t.Errorf("Rejected %v, want [%v]", te.Rejected, want)
	}
	if !strings.Contains(err.Error(), c1+" ACKed but is not a recipient") {
		t.Errorf("error %q does not say that %s ACKed", err, c1)
	}
}

// TestAckWaitEndedByContext: a ctx that ends before the ACK timeout is
// reported as such, with how long the publish waited, not as the ACK
// timeout passing.
func TestAckWaitEndedByContext(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	n.start(c1) // never reads: no ACK
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := pub.Publish(ctx, "job", map[string]any{"n": 1}, WithRecipients(c1), WithAckTimeout(time.Minute))
		var te *AckTimeoutError
		if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("err %v, want an AckTimeoutError matching context.DeadlineExceeded", err)
		}
		if strings.Contains(err.Error(), "within 1m") || !strings.Contains(err.Error(), "deadline came after") {
			t.Errorf("error %q: want the context's deadline and the time waited", err)
		}
		if te.Waited <= 0 || te.Waited >= time.Minute {
			t.Errorf("Waited %v", te.Waited)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := pub.Publish(ctx, "job", map[string]any{"n": 2}, WithRecipients(c1), WithAckTimeout(time.Minute))
		var te *AckTimeoutError
		if !errors.As(err, &te) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrAckTimeout) {
			t.Fatalf("err %v, want an AckTimeoutError matching context.Canceled, not ErrAckTimeout", err)
		}
		if !strings.Contains(err.Error(), "after") || !strings.Contains(err.Error(), "cancel") {
			t.Errorf("error %q: want cancelled, the time waited and who did not ACK", err)
		}
	})
}
