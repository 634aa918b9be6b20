package gilmsg

// Receiving a whole message (frameReader), sending a two-frame one
// (send2) and moving one from socket to socket (forwarder), each in one or
// two cgo calls. pebbe/zmq4 makes five cgo calls and two allocations a
// frame to receive (zmq_msg_init, zmq_msg_recv, zmq_msg_data, a copy,
// zmq_msg_close) and one more call and two allocations to ask
// ZMQ_RCVMORE; a fedmsg message is two frames, so twelve calls and eight
// allocations, on the path every message of a subscription takes.
//
// All need the libzmq socket pointer, which pebbe/zmq4 keeps unexported:
// socketHandle reads it from the *zmq.Socket's first field. go.mod pins
// the version whose layout that is, but a program importing gilmsg can
// raise it, so the layout is checked once with reflect (first field
// "soc", an unsafe.Pointer, at offset 0: socketLayoutOK), and each handle
// by asking libzmq the socket's type through it, which libzmq answers
// only for a live socket (it tags each one). Where either check fails, the
// pebbe/zmq4 calls are used.

/*
#cgo pkg-config: libzmq
#include <zmq.h>
#include <errno.h>
#include <string.h>

#define GILMSG_MAX_FRAMES 16

typedef struct {
	zmq_msg_t msgs[GILMSG_MAX_FRAMES];
	size_t sizes[GILMSG_MAX_FRAMES];
	size_t total;
	int held;
} gilmsg_rx;

// gilmsg_recv receives every frame of one message, the first with
// ZMQ_DONTWAIT (the rest are already there: ZeroMQ delivers a message's
// frames together). It holds up to GILMSG_MAX_FRAMES of them in rx, with
// their total size; further frames are received, dropped and counted.
// It returns the number of frames, or -1 with errno and nothing held.
static int gilmsg_recv(void *sock, gilmsg_rx *rx) {
	int n = 0;
	rx->held = 0;
	rx->total = 0;
	for (;;) {
		zmq_msg_t spare;
		zmq_msg_t *m = n < GILMSG_MAX_FRAMES ? &rx->msgs[n] : &spare;
		zmq_msg_init(m);
		int rc;
		do {
			rc = zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0);
		} while (rc < 0 && errno == EINTR && n > 0);
		if (rc < 0) {
			int e = errno;
			zmq_msg_close(m);
			for (int i = 0; i < rx->held; i++)
				zmq_msg_close(&rx->msgs[i]);
			rx->held = 0;
			errno = e;
			return -1;
		}
		int more = zmq_msg_more(m);
		if (n < GILMSG_MAX_FRAMES) {
			rx->sizes[n] = zmq_msg_size(m);
			rx->total += rx->sizes[n];
			rx->held = n + 1;
		} else {
			zmq_msg_close(m);
		}
		n++;
		if (!more)
			return n;
	}
}

// gilmsg_take copies the frames rx holds into buf, back to back, and
// releases them.
static void gilmsg_take(gilmsg_rx *rx, char *buf) {
	for (int i = 0; i < rx->held; i++) {
		size_t size = rx->sizes[i];
		if (size > 0)
			memcpy(buf, zmq_msg_data(&rx->msgs[i]), size);
		buf += size;
		zmq_msg_close(&rx->msgs[i]);
	}
	rx->held = 0;
}

// gilmsg_send2 sends a two-frame message; zmq_send copies both.
static int gilmsg_send2(void *sock, const void *a, size_t alen, const void *b, size_t blen, int flags) {
	int rc;
	do {
		rc = zmq_send(sock, a, alen, flags | ZMQ_SNDMORE);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return rc;
	do {
		rc = zmq_send(sock, b, blen, flags & ~ZMQ_DONTWAIT);
	} while (rc < 0 && errno == EINTR);
	return rc;
}

typedef struct {
	int frames;
	int stage;   // of a failure: 1 receiving, 2 sending
	int pending; // first holds a message's first frame that found no room
	zmq_msg_t first;
} gilmsg_fwd;

// gilmsg_discard_rest reads and drops the frames that follow one whose
// more flag was more, so that the next receive starts a message.
static void gilmsg_discard_rest(void *sub, int more) {
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		int rc;
		do {
			rc = zmq_msg_recv(&m, sub, 0);
		} while (rc < 0 && errno == EINTR);
		more = rc >= 0 && zmq_msg_more(&m);
		zmq_msg_close(&m);
	}
}

// gilmsg_forward moves one message from sub to pub, frame by frame,
// without copying (zmq_msg_send takes the frame over); the first frame
// is received with ZMQ_DONTWAIT, and sent with first_flags. It returns the
// number of frames, or -1 with errno and f->stage. When the first frame
// cannot be sent for EAGAIN (a fan-out socket with no room: see
// zsock.Fanout), it is kept in f, and the next call sends it instead of
// receiving one. A frame that cannot be sent otherwise is dropped with
// the rest of its message, so that the next receive starts a message.
static int gilmsg_forward(void *sub, void *pub, gilmsg_fwd *f, int first_flags) {
	f->frames = 0;
	f->stage = 0;
	for (;;) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		int rc;
		if (f->frames == 0 && f->pending) {
			zmq_msg_move(&m, &f->first);
			zmq_msg_close(&f->first);
			f->pending = 0;
		} else {
			do {
				rc = zmq_msg_recv(&m, sub, f->frames == 0 ? ZMQ_DONTWAIT : 0);
			} while (rc < 0 && errno == EINTR && f->frames > 0);
			if (rc < 0) {
				int e = errno;
				zmq_msg_close(&m);
				f->stage = 1;
				errno = e;
				return -1;
			}
		}
		int more = zmq_msg_more(&m);
		int flags = (more ? ZMQ_SNDMORE : 0) | (f->frames == 0 ? first_flags : 0);
		f->frames++;
		do {
			rc = zmq_msg_send(&m, pub, flags);
		} while (rc < 0 && errno == EINTR);
		if (rc < 0) {
			int e = errno;
			f->stage = 2;
			if (f->frames == 1 && e == EAGAIN) {
				zmq_msg_init(&f->first);
				zmq_msg_move(&f->first, &m);
				zmq_msg_close(&m);
				f->pending = 1;
				errno = e;
				return -1;
			}
			zmq_msg_close(&m);
			gilmsg_discard_rest(sub, more);
			errno = e;
			return -1;
		}
		if (!more)
			return f->frames;
	}
}

// gilmsg_forward_drop drops the first frame f holds, if any, and the rest
// of its message.
static void gilmsg_forward_drop(void *sub, gilmsg_fwd *f) {
	if (!f->pending)
		return;
	int more = zmq_msg_more(&f->first);
	zmq_msg_close(&f->first);
	f->pending = 0;
	gilmsg_discard_rest(sub, more);
}

static int gilmsg_socket_type(void *sock) {
	int t = -1;
	size_t size = sizeof t;
	if (zmq_getsockopt(sock, ZMQ_TYPE, &t, &size) != 0)
		return -1;
	return t;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"syscall"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// socketHandle returns the libzmq socket under s, or nil where it cannot
// be had safely (see the top of this file). It is for the owner of s.
func socketHandle(s *zmq.Socket) unsafe.Pointer {
	if !useSocketHandle || !socketLayoutOK() {
		return nil
	}
	// pebbe/zmq4 v1.4.0: type Socket struct { soc unsafe.Pointer; ... }
	h := (*struct{ soc unsafe.Pointer })(unsafe.Pointer(s)).soc
	if h == nil {
		return nil
	}
	t, err := s.GetType()
	if err != nil || int(C.gilmsg_socket_type(h)) != int(t) {
		return nil
	}
	return h
}

// useSocketHandle false makes socketHandle return nil, so that every
// socket uses pebbe/zmq4's calls: tests flip it to run that path.
var useSocketHandle = true

// socketLayoutOK says whether zmq.Socket's layout is the one socketHandle
// reads.
var socketLayoutOK = sync.OnceValue(func() bool {
	return handleFieldFirst(reflect.TypeFor[zmq.Socket]())
})

// handleFieldFirst says whether struct type t starts with a field soc of
// type unsafe.Pointer.
func handleFieldFirst(t reflect.Type) bool {
	if t.Kind() != reflect.Struct || t.NumField() == 0 {
		return false
	}
	f := t.Field(0)
	return f.Name == "soc" && f.Offset == 0 && f.Type == reflect.TypeFor[unsafe.Pointer]()
}

// frameReader receives whole messages: two cgo calls and one allocation
// (all the frames share one buffer) a message. It belongs to the owner of
// the sockets it reads.
type frameReader struct {
	rx C.gilmsg_rx // Go memory holding no Go pointer, lent to C for a call
}

// recv receives one message from sock (h is its socketHandle, or nil)
// without waiting, appending its frames to frames: EAGAIN when none is
// queued. Each frame's capacity ends where it does, so that appending to
// one never writes over the next.
func (r *frameReader) recv(sock *zmq.Socket, h unsafe.Pointer, frames [][]byte) ([][]byte, error) {
	if h == nil {
		return recvFramesPebbe(sock, frames)
	}
	var n C.int
	var err error
	for {
		n, err = C.gilmsg_recv(h, &r.rx)
		if n >= 0 || !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if n < 0 {
		return frames[:0], zmqErrno(err)
	}
	var buf []byte
	if r.rx.total > 0 {
		buf = make([]byte, int(r.rx.total))
		C.gilmsg_take(&r.rx, (*C.char)(unsafe.Pointer(&buf[0])))
	} else {
		C.gilmsg_take(&r.rx, nil)
	}
	off := 0
	for i := range int(n) {
		if i >= int(C.GILMSG_MAX_FRAMES) {
			frames = append(frames, nil) // counted, not kept
			continue
		}
		end := off + int(r.rx.sizes[i])
		frames = append(frames, buf[off:end:end])
		off = end
	}
	return frames, nil
}

// recvFramesPebbe is recv through pebbe/zmq4's calls.
func recvFramesPebbe(sock *zmq.Socket, frames [][]byte) ([][]byte, error) {
	for {
		f, err := sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return frames[:0], err
		}
		frames = append(frames, f)
		more, err := sock.GetRcvmore()
		if err != nil {
			return frames[:0], err
		}
		if !more {
			return frames, nil
		}
	}
}

// send2 sends the two frames a and b as one message on sock (h is its
// socketHandle, or nil) with one cgo call; block false sends the first
// with ZMQ_DONTWAIT (see [zsock.Fanout.Send]).
func send2(sock *zmq.Socket, h unsafe.Pointer, a string, b []byte, block bool) error {
	if h == nil {
		var err error
		if block {
			_, err = sock.SendMessage(a, b)
		} else {
			_, err = sock.SendMessageDontwait(a, b)
		}
		return err
	}
	var flags C.int
	if !block {
		flags = C.ZMQ_DONTWAIT
	}
	ap, bp := unsafe.Pointer(unsafe.StringData(a)), unsafe.Pointer(unsafe.SliceData(b))
	if rc, err := C.gilmsg_send2(h, ap, C.size_t(len(a)), bp, C.size_t(len(b)), flags); rc < 0 {
		return zmqErrno(err)
	}
	return nil
}

// zmqErrno is the error of a failed libzmq call as pebbe/zmq4 gives it,
// a zmq.Errno, so that zmq.AsErrno and its messages work alike.
func zmqErrno(err error) error {
	var e syscall.Errno
	if errors.As(err, &e) {
		return zmq.Errno(e)
	}
	return fmt.Errorf("libzmq call failed without an errno: %v", err)
}

// forwarder moves whole messages from one socket to another in one cgo
// call each, without copying them through Go. It belongs to the owner of
// both sockets.
type forwarder struct {
	f C.gilmsg_fwd // Go memory holding no Go pointer, lent to C for a call
}

// forward moves one message from sub to pub (their socketHandles, both
// non-nil) without waiting for one to arrive: the number of frames,
// EAGAIN when none was queued. It sends through fan (see
// [zsock.Fanout.Send]; nil for a socket that drops for full subscribers).
// A *forwardError says which side failed.
func (w *forwarder) forward(sub, pub unsafe.Pointer, fan *zsock.Fanout) (int, error) {
	var frames int
	err := fan.Send(func(block bool) error {
		var flags C.int
		if !block {
			flags = C.ZMQ_DONTWAIT
		}
		var err error
		frames, err = w.forward1(sub, pub, flags)
		if w.f.pending != 0 {
			return err.(*forwardError).err // EAGAIN, for Send
		}
		return err
	})
	if w.f.pending != 0 { // Send gave up: not for EAGAIN, which it sends past
		C.gilmsg_forward_drop(sub, &w.f)
		return 1, &forwardError{send: true, err: err}
	}
	return frames, err
}

func (w *forwarder) forward1(sub, pub unsafe.Pointer, flags C.int) (int, error) {
	for {
		n, err := C.gilmsg_forward(sub, pub, &w.f, flags)
		if n >= 0 {
			return int(n), nil
		}
		if w.f.stage == 1 && w.f.frames == 0 && errors.Is(err, syscall.EINTR) {
			continue
		}
		return int(w.f.frames), &forwardError{send: w.f.stage == 2, err: zmqErrno(err)}
	}
}

// forwardError is a failed forward: receiving, or sending.
type forwardError struct {
	send bool
	err  error
}

func (e *forwardError) Error() string {
	if e.send {
		return "send: " + e.err.Error()
	}
	return "receive: " + e.err.Error()
}

func (e *forwardError) Unwrap() error { return e.err }
