package gilmsg

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// oversized is one byte past the default max_message_size.
func oversized() []byte { return bytes.Repeat([]byte("x"), DefaultMaxMessageSize+1) }

// TestRelayRefusesOversizedMessages: the relay's inbound socket (and so
// the signing relay's, which opens it the same way) has max_message_size.
// One 40 MB message took a signing relay to 1.85 GB. The publisher that
// sent it is disconnected, reconnects, and what it sends next still goes
// through.
func TestRelayRefusesOversizedMessages(t *testing.T) {
	checkLeaks(t)
	r := testRelay(t, relayTestConfig())
	runRelay(t, r)
	c := newRelayClients(t, testZCtx(t), r)
	if _, err := c.pub.SendMessage("big", oversized()); err != nil {
		t.Fatal(err)
	}
	c.sub.SetRcvtimeo(20 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.pub.SendMessage("after", "{}"); err != nil {
			t.Fatal(err)
		}
		msg, err := c.sub.RecvMessageBytes(0)
		if err == nil && string(msg[0]) != "probe" {
			if string(msg[0]) != "after" {
				t.Fatalf("the relay forwarded %q (%d bytes)", msg[0], len(msg[len(msg)-1]))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing came through the relay after the oversized message")
		}
	}
}

// TestGatewayRefusesOversizedMessages: the gateway's SUB drops a source
// that sends more than max_message_size, and connects to it again, which
// libzmq does not do by itself for a connecting socket.
func TestGatewayRefusesOversizedMessages(t *testing.T) {
	checkLeaks(t)
	rig := newGatewayRig(t, 0)
	if _, err := rig.pub.SendMessage("big", oversized()); err != nil {
		t.Fatal(err)
	}
	rig.sub.SetRcvtimeo(20 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := rig.pub.SendMessage("after", "{}"); err != nil {
			t.Fatal(err)
		}
		msg, err := rig.sub.RecvMessageBytes(0)
		if err == nil && string(msg[0]) != "probe" {
			if string(msg[0]) != "after" {
				t.Fatalf("the gateway forwarded %q (%d bytes)", msg[0], len(msg[len(msg)-1]))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway never reconnected to the source that sent an oversized message")
		}
	}
}

// TestQuoteShort: what a peer chose appears in logs and errors cut.
func TestQuoteShort(t *testing.T) {
	long := strings.Repeat("é", 1<<19) // 1 MB, two bytes a rune
	for _, tc := range []struct{ in, want string }{
		{"bodhi", `"bodhi"`},
		{long, `"` + strings.Repeat("é", 32) + `"... (1048576 bytes)`},
		{"a" + long, `"a` + strings.Repeat("é", 31) + `"... (1048577 bytes)`},
	} {
		if got := quoteShort(tc.in); got != tc.want {
			t.Errorf("quoteShort(%.20q...) = %.100q, want %q", tc.in, got, tc.want)
		}
	}
}
