package gilmsg

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// TestSocketHandle: the pinned pebbe/zmq4 layout holds, so the one-call
// paths are the ones in use (were it to change, socketHandle would return
// nil and every read would silently take the slow path).
func TestSocketHandle(t *testing.T) {
	checkLeaks(t)
	zctx := testZCtx(t)
	for _, typ := range []zmq.Type{zmq.SUB, zmq.XPUB, zmq.PUB} {
		s := testSocket(t, zctx, typ, testSockOpts())
		if socketHandle(s) == nil {
			t.Errorf("%v: no handle: pebbe/zmq4's Socket layout is not the one zmqio.go reads", typ)
		}
	}
}

// TestSocketLayoutCheck: the reflect check accepts pebbe/zmq4's Socket
// and refuses layouts it must not read through.
func TestSocketLayoutCheck(t *testing.T) {
	if !socketLayoutOK() {
		t.Error("the pinned pebbe/zmq4 Socket fails the layout check")
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[struct{ soc uintptr }](),
		reflect.TypeFor[struct{ sock unsafe.Pointer }](),
		reflect.TypeFor[struct {
			ctx unsafe.Pointer
			soc unsafe.Pointer
		}](),
		reflect.TypeFor[struct{}](),
		reflect.TypeFor[unsafe.Pointer](),
	} {
		if handleFieldFirst(typ) {
			t.Errorf("%v passes the layout check", typ)
		}
	}
}

// TestPublicCallsFallback: with no socket handle (a pebbe/zmq4 whose
// layout changed), publishing and tailing go through pebbe/zmq4's calls
// and a message still arrives whole.
func TestPublicCallsFallback(t *testing.T) {
	useSocketHandle = false
	t.Cleanup(func() { useSocketHandle = true })
	n := newTestNet(t)
	pub := n.start("publisher01.example.org", WithModname("bodhi"))
	sub := n.start("")
	msgs := tail(t, sub, "")
	if pub.pub.handle != nil {
		t.Fatal("the publisher has a socket handle with useSocketHandle false")
	}
	if err := pub.WaitSubscribers(ctxT(t), "update.request", 1); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	if _, err := pub.Publish(ctxT(t), "update.request", map[string]any{"n": 1, "big": big}); err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs)
	var got struct {
		N   int
		Big string
	}
	if err := m.Decode(&got); err != nil || got.N != 1 || got.Big != big || m.Signer != "publisher01.example.org" {
		t.Errorf("got n=%d, %d bytes, signer %q, err %v", got.N, len(got.Big), m.Signer, err)
	}
}

// frameCases are messages as frames, sent with pebbe/zmq4 and read back.
func frameCases() [][][]byte {
	many := make([][]byte, 20) // past GILMSG_MAX_FRAMES
	for i := range many {
		many[i] = []byte(fmt.Sprint(i))
	}
	return [][][]byte{
		{[]byte("org.example.topic"), []byte(`{"msg":{}}`)},
		{[]byte("one frame")},
		{{}, {}},
		{[]byte("t"), {}, []byte("third")},
		{[]byte("big"), bytes.Repeat([]byte("0123456789abcdef"), 1<<16)},
		many,
	}
}

// connectedPubSub is a PUB bound on loopback and a SUB to everything
// connected to it (the subscription may not have arrived yet).
func connectedPubSub(t *testing.T) (pub, sub *zmq.Socket) {
	t.Helper()
	zctx := testZCtx(t)
	pub = testSocket(t, zctx, zmq.PUB, testSockOpts())
	ep := bindLoopback(t, pub)
	sub = testSocket(t, zctx, zmq.SUB, testSockOpts())
	sub.SetSubscribe("")
	if err := sub.Connect(ep); err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

func TestFrameReaderRecv(t *testing.T) {
	checkLeaks(t)
	pub, sub := connectedPubSub(t)
	h := socketHandle(sub)
	if h == nil {
		t.Fatal("no socket handle")
	}
	var r frameReader
	recv := func(t *testing.T) [][]byte {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			frames, err := r.recv(sub, h, nil)
			if err == nil && (len(frames) != 1 || string(frames[0]) != "probe") {
				return frames
			}
			if err == nil {
				continue // a late probe
			}
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				t.Fatalf("recv: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatal("nothing received")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Until the subscription is through (a plain PUB says nothing).
	for {
		if _, err := pub.SendMessage("probe"); err != nil {
			t.Fatal(err)
		}
		if f, err := r.recv(sub, h, nil); err == nil && string(f[0]) == "probe" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for {
		if _, err := r.recv(sub, h, nil); err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				t.Fatalf("recv with nothing queued = %v, want EAGAIN", err)
			}
			break
		}
	}
	for _, want := range frameCases() {
		parts := make([]any, len(want))
		for i, f := range want {
			parts[i] = f
		}
		if _, err := pub.SendMessage(parts...); err != nil {
			t.Fatal(err)
		}
		got := recv(t)
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range got {
			if i >= 16 {
				if got[i] != nil {
					t.Errorf("frame %d past the 16 kept: %q, want nil (counted only)", i, got[i])
				}
				continue
			}
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("frame %d: %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(want[i]), want[i])
			}
		}
		if len(got) >= 2 && len(got[1]) > 0 {
			next := got[1][0]
			_ = append(got[0], '!') // must not write over frame 1
			if got[1][0] != next {
				t.Error("appending to frame 0 wrote over frame 1")
			}
		}
	}
}

func TestSend2(t *testing.T) {
	checkLeaks(t)
	pub, sub := connectedPubSub(t)
	sub.SetRcvtimeo(10 * time.Millisecond)
	h := socketHandle(pub)
	if h == nil {
		t.Fatal("no socket handle")
	}
	for {
		if err := send2(pub, h, "probe", nil, true); err != nil {
			t.Fatal(err)
		}
		if f, err := sub.RecvMessageBytes(0); err == nil {
			if len(f) != 2 || string(f[0]) != "probe" || len(f[1]) != 0 {
				t.Fatalf("probe arrived as %q", f)
			}
			break
		}
	}
	for {
		if _, err := sub.RecvMessageBytes(0); err != nil {
			break
		}
	}
	sub.SetRcvtimeo(5 * time.Second)
	for _, tc := range []struct {
		a string
		b []byte
	}{
		{"org.example.topic", []byte(`{"msg":{}}`)},
		{"", []byte("empty topic")},
		{"big", bytes.Repeat([]byte("x"), 1<<20)},
	} {
		if err := send2(pub, h, tc.a, tc.b, true); err != nil {
			t.Fatal(err)
		}
		got, err := sub.RecvMessageBytes(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || string(got[0]) != tc.a || !bytes.Equal(got[1], tc.b) {
			t.Errorf("sent %q + %d bytes, got %d frames", tc.a, len(tc.b), len(got))
		}
	}
}
