package testenv

import (
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ReplayAsk sends one raw request to the replay server at endpoint, as
// Python's get_replay does, and returns its answer's frames.
func ReplayAsk(t *testing.T, endpoint string, frames ...[]byte) [][]byte {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	sock, err := zctx.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sock.SetLinger(100 * time.Millisecond) // not 0: see internal/zsock's MinSendLingerMS
	sock.SetRcvtimeo(20 * time.Second)
	if err := sock.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	parts := make([]any, len(frames))
	for i, f := range frames {
		parts[i] = f
	}
	if _, err := sock.SendMessage(parts...); err != nil {
		t.Fatal(err)
	}
	reply, err := sock.RecvMessageBytes(0)
	if err != nil {
		t.Fatalf("no reply to %q: %v", frames, err)
	}
	return reply
}
