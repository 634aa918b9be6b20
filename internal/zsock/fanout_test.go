package zsock_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/gilmsg/gilmsg-go/internal/zsock"
)

// TestSendPastKeepsUpWithReader: a burst of SendPast's sends (a
// publisher's queue of ACKs) to a subscriber that reads all along loses
// nothing. libzmq learns that a subscriber read only when the sending
// socket processes its commands, at most once a millisecond during
// sends: a burst of more than the cap within one found the subscriber
// "full", and SendPast sent past it, dropping the rest of the burst for
// the very peer those ACKs were for.
func TestSendPastKeepsUpWithReader(t *testing.T) {
	const hwm, n = 128, 20 * 128
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	pub, err := zctx.NewSocket(zmq.XPUB)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.SetLinger(0)
	pub.SetSndhwm(hwm)
	fan, err := zsock.NewFanout(pub, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := pub.GetLastEndpoint()
	sub, err := zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.SetLinger(0)
	sub.SetRcvhwm(hwm)
	sub.SetSubscribe("")
	if err := sub.Connect(ep); err != nil {
		t.Fatal(err)
	}
	// The subscription is in once the XPUB reads it.
	pub.SetRcvtimeo(10 * time.Second)
	if _, err := pub.RecvBytes(0); err != nil {
		t.Fatalf("no subscription: %v", err)
	}
	got := make(chan int)
	go func() {
		count := 0
		for {
			m, err := sub.RecvBytes(0)
			if err != nil || string(m) == "end" {
				got <- count
				return
			}
			count++
		}
	}()
	send := func(msg string) func(bool) error {
		return func(block bool) error {
			flags := zmq.DONTWAIT
			if block {
				flags = 0
			}
			_, err := pub.Send(msg, flags)
			return err
		}
	}
	for range n {
		if err := fan.SendPast(send("ack")); err != nil {
			t.Fatal(err)
		}
	}
	// Behind every ACK on the one pipe: once one arrives, all the ACKs
	// that were sent have. (It may be sent past too: then again.)
	for range 200 {
		if err := fan.Send(send("end")); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c != n {
				t.Errorf("the reader got %d of %d messages sent past full subscribers (%d sends found one): none was full", c, n, fan.SentPast())
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("no end marker came")
}
