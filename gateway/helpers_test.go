package gateway_test

import (
	"bytes"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/zbench"
)

// testConfig is a config whose sockets close and reconnect quickly.
func testConfig() *gilmsg.Config {
	cfg := gilmsg.DefaultConfig()
	cfg.Endpoints = map[string][]string{}
	cfg.ZMQLinger = 0
	cfg.ZMQReconnectIvl = 10
	cfg.ZMQReconnectIvlMax = 50
	return cfg
}

// newZCtx returns a context terminated when the test ends, after the
// sockets the test made (cleanups run last-in first-out).
func newZCtx(t testing.TB) *zmq.Context {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := zctx.Term(); err != nil {
			t.Errorf("term: %v", err)
		}
	})
	return zctx
}

// newSocket is a socket of a plain ZeroMQ client outside the bus, whose
// queues hold hwm messages (0: no limit), closed when the test ends. A
// PUB keeps a short linger: libzmq can abort a process whose socket
// closes with no linger while a peer fails mid-message.
func newSocket(t testing.TB, zctx *zmq.Context, typ zmq.Type, hwm int) *zmq.Socket {
	t.Helper()
	s, err := zctx.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	linger := time.Duration(0)
	if typ != zmq.SUB {
		linger = 100 * time.Millisecond
	}
	for _, err := range []error{s.SetSndhwm(hwm), s.SetRcvhwm(hwm), s.SetLinger(linger),
		s.SetReconnectIvl(10 * time.Millisecond), s.SetReconnectIvlMax(50 * time.Millisecond)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// bind binds s on a free loopback port and returns the endpoint.
func bind(t testing.TB, s *zmq.Socket) string {
	t.Helper()
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, err := s.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func waitErr(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// benchSockets returns a PUB and a SUB subscribed to everything, on a
// context of their own, all closed when b ends.
func benchSockets(b *testing.B) (pub, sub *zmq.Socket) {
	zctx := newZCtx(b)
	pub = newSocket(b, zctx, zmq.PUB, 0)
	sub = newSocket(b, zctx, zmq.SUB, 0)
	sub.SetSubscribe("")
	return pub, sub
}

// benchPubSub times b.N messages of 1 kB through pub and sub.
func benchPubSub(b *testing.B, pub, sub *zmq.Socket) {
	b.Helper()
	zbench.PubSub(b, pub, sub, bytes.Repeat([]byte("x"), 1024))
}
