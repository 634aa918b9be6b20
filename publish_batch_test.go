package gilmsg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// SealEach seals each message as Seal would, its signatures made in one
// call: each arrives signed and validated, in the order sent, and a
// message Seal would refuse is refused at its own index only.
func TestSealEach(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	msgs := tail(t, n.start(""), "org.example.dev.")
	if err := pub.WaitSubscribers(ctxT(t), "each", 1); err != nil {
		t.Fatal(err)
	}
	const k = 9
	drafts := make([]BatchMessage, k)
	for i := range drafts {
		drafts[i] = BatchMessage{Topic: "each", Msg: map[string]any{"i": i}, Opts: []PublishOption{WithMsgID(fmt.Sprintf("each-%d", i))}}
	}
	drafts[4].Opts = append(drafts[4].Opts, WithRecipients(c1))
	sealed, errs := pub.SealEach(drafts)
	if len(sealed) != k || len(errs) != k {
		t.Fatalf("%d sealed, %d errors for %d messages", len(sealed), len(errs), k)
	}
	var send []*SealedMessage
	for i := range k {
		switch {
		case i == 4:
			if !errors.Is(errs[i], ErrInvalidOption) || sealed[i] != nil {
				t.Fatalf("message 4 (with recipients): %v, %v; want ErrInvalidOption", sealed[i], errs[i])
			}
		case errs[i] != nil:
			t.Fatalf("message %d: %v", i, errs[i])
		default:
			send = append(send, sealed[i])
		}
	}
	if _, err := pub.SendSealed(ctxT(t), send...); err != nil {
		t.Fatal(err)
	}
	for _, s := range send {
		m := receive(t, msgs)
		if m.MsgID != s.MsgID() || m.Signer != pubCN {
			t.Fatalf("%s signed by %q arrived, want %s signed by %s", m.MsgID, m.Signer, s.MsgID(), pubCN)
		}
	}
	if s, errs := pub.SealEach(nil); len(s) != 0 || len(errs) != 0 {
		t.Fatalf("no messages: %v, %v", s, errs)
	}
}

// Sealed bodies live in pooled buffers that the send hands back: sealed
// on several goroutines (SealEach, in batches, some bodies past the
// pool's size limit), sent while unsigned publishes of another bus share
// the pool, every message arrives whole, validated, with its own msg. A
// buffer handed back while its message was still to be read would show
// as a bad signature or another message's msg (run with -race). One
// given to SendSealed again, or after Close, is refused.
func TestSealedBuffersNotShared(t *testing.T) {
	const workers, each = 4, 24
	n := newTestNet(t)
	pub := n.start(pubCN)
	cfg := n.config(c1)
	cfg.SignMessages = false
	plain, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	msgs := tail(t, n.start(""), pub.FullTopic("", "pooled"))
	if err := pub.WaitSubscribers(ctxT(t), "pooled", 1); err != nil {
		t.Fatal(err)
	}
	pad := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), i*1237%(96<<10)) }
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() { // unsigned publishes: pooled bodies too
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := plain.Publish(ctxT(t), "churn", map[string]any{"pad": pad(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	var last *SealedMessage
	var lastMu sync.Mutex
	for w := range workers {
		wg.Go(func() {
			for start := 0; start < each; {
				k := min(1+start%5, each-start)
				drafts := make([]BatchMessage, k)
				for j := range drafts {
					i := w*each + start + j
					drafts[j] = BatchMessage{Topic: "pooled", Msg: map[string]any{"i": i, "pad": pad(i)}, Opts: []PublishOption{WithMsgID(fmt.Sprintf("pooled-%d", i))}}
				}
				sealed, errs := pub.SealEach(drafts)
				for j, err := range errs {
					if err != nil {
						t.Errorf("SealEach %d: %v", start+j, err)
						return
					}
				}
				if _, err := pub.SendSealed(ctxT(t), sealed...); err != nil {
					t.Errorf("SendSealed: %v", err)
					return
				}
				lastMu.Lock()
				last = sealed[k-1]
				lastMu.Unlock()
				start += k
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	seen := map[int]bool{}
	for range workers * each {
		m := receive(t, msgs)
		body, _ := m.Msg().(map[string]any)
		i, err := strconv.Atoi(strings.TrimPrefix(m.MsgID, "pooled-"))
		if err != nil || seen[i] || body == nil || fmt.Sprint(body["i"]) != strconv.Itoa(i) || body["pad"] != pad(i) {
			t.Fatalf("%s arrived with msg i=%v, pad of %d bytes (seen before: %v)", m.MsgID, body["i"], len(fmt.Sprint(body["pad"])), seen[i])
		}
		seen[i] = true
	}
	if _, err := pub.SendSealed(ctxT(t), last); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("a sealed message sent again: %v, want ErrInvalidOption", err)
	}
	unsent, err := pub.Seal("pooled", map[string]any{"pad": pad(90)})
	if err != nil {
		t.Fatal(err)
	}
	pub.Close()
	if _, err := pub.SendSealed(ctxT(t), unsent); !errors.Is(err, ErrClosed) {
		t.Errorf("SendSealed after Close: %v, want ErrClosed", err)
	}
}
