package gilmsg

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestPublishRefusesWhatSubscribersDrop: Publish compared max_message_size
// with the msg alone, so that a msg just under it went out with an
// envelope (signature and certificate: ~3 kB) that took it over, and every
// Go subscriber with the same limit dropped its connection on it, losing
// it and what followed, while the publisher (gilmsg logger: exit status
// 0) called it sent. Every message Publish accepts must reach such a
// subscriber.
func TestPublishRefusesWhatSubscribersDrop(t *testing.T) {
	const limit = 64 << 10
	tn := newTestNet(t)
	pub := tn.start("publisher01.example.org", WithMaxMessageSize(limit))
	msgs := tail(t, tn.start("", WithMaxMessageSize(limit)), "")
	if err := pub.WaitSubscribers(ctxT(t), "", 1); err != nil {
		t.Fatal(err)
	}
	var sent []string
	for size := limit - 6<<10; size <= limit; size += 256 {
		topic := "size." + strconv.Itoa(size)
		_, err := pub.Publish(ctxT(t), topic, map[string]any{"p": strings.Repeat("p", size)})
		switch {
		case errors.Is(err, ErrMessageTooLarge):
		case err != nil:
			t.Fatal(err)
		default:
			sent = append(sent, topic)
		}
	}
	if _, err := pub.Publish(ctxT(t), "end", nil); err != nil {
		t.Fatal(err)
	}
	if len(sent) == 0 {
		t.Fatal("every size was refused")
	}
	for _, want := range sent {
		if m := receive(t, msgs); !strings.HasSuffix(m.Topic, "."+want) {
			t.Fatalf("got %s, want %s: the subscriber dropped what was between", m.Topic, want)
		}
	}
	if m := receive(t, msgs); !strings.HasSuffix(m.Topic, ".end") {
		t.Fatalf("got %s, want the end", m.Topic)
	}
}
