package gilmsg

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Messages sealed on several goroutines at once leave in the order given
// to SendSealed, signed and validated; a message is sent once, and bad
// input to SendSealed sends nothing from it on.
func TestSealThenSendInAnotherOrder(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	other := n.start(c1)
	msgs := tail(t, n.start(""), "org.example.dev.")
	if err := pub.WaitSubscribers(ctxT(t), "sealed", 1); err != nil {
		t.Fatal(err)
	}
	const k = 8
	sealed := make([]*SealedMessage, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if sealed[i], err = pub.Seal("sealed", map[string]any{"i": i}, WithMsgID(fmt.Sprintf("sealed-%d", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	order := make([]*SealedMessage, k)
	for i := range k {
		order[i] = sealed[k-1-i]
	}
	receipts, err := pub.SendSealed(ctxT(t), order...)
	if err != nil || len(receipts) != k {
		t.Fatalf("SendSealed: %d receipts, %v", len(receipts), err)
	}
	for i := range k {
		want := fmt.Sprintf("sealed-%d", k-1-i)
		m := receive(t, msgs)
		if m.MsgID != want || receipts[i].MsgID != want || m.Signer != pubCN {
			t.Fatalf("message %d: %s signed by %q (receipt %s), want %s signed by %s", i, m.MsgID, m.Signer, receipts[i].MsgID, want, pubCN)
		}
	}

	fresh, err := pub.Seal("sealed", nil, WithMsgID("fresh"))
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.Seal("sealed", nil, WithMsgID("from-other"))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]*SealedMessage{
		"sent before":      {sealed[0], fresh},
		"nil":              {nil, fresh},
		"from another bus": {fromOther, fresh},
	} {
		receipts, err := pub.SendSealed(ctxT(t), bad...)
		if !errors.Is(err, ErrInvalidOption) || len(receipts) != 0 {
			t.Errorf("%s: %d receipts, %v; want none and ErrInvalidOption", name, len(receipts), err)
		}
	}
	if _, err := pub.Seal("sealed", nil, WithRecipients(c1)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Seal with recipients: %v, want ErrInvalidOption", err)
	}
	// fresh was never taken: it goes now, and is the next message.
	if _, err := pub.SendSealed(ctxT(t), fresh); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, msgs); m.MsgID != "fresh" {
		t.Fatalf("after the refused sends, %s arrived first, want fresh", m.MsgID)
	}
}
