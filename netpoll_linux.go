package gilmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// readyPoller waits, in Go's netpoller, until one of a set of ZeroMQ
// sockets may have input, so that a goroutine waiting for a message holds
// neither an OS thread nor a P (a cgo zmq_poll holds both), and one
// goroutine can wait on any number of sockets.
//
// How: each socket's ZMQ_FD (the eventfd of its command mailbox) is in a
// private, level-triggered epoll set, and that epoll fd is registered with
// Go's netpoller through an *os.File. The owner blocks in
// [syscall.RawConn.Read] on it; the readiness check inside Read is a
// non-blocking epoll_wait of the private set, so no edge is ever lost:
// Read first clears its readiness token, then checks the level, then waits
// for an edge, and any edge after the clear is kept.
//
// ZeroMQ's rules for ZMQ_FD, which the owner must keep:
//
//   - ZMQ_FD says "commands are pending", not "a message is queued": a
//     message arriving on a pipe the socket already knows to be active
//     signals nothing. So the owner reads a socket it was told about until
//     a DONTWAIT receive fails with EAGAIN (which processes the commands
//     and re-arms the signal), and only then may wait for it again.
//   - Any other zmq call on the socket (connect, disconnect, a socket
//     option) may process commands too, and with them consume a signal for
//     messages it does not read: after one, treat the socket as readable.
//   - A socket with input before it was added must be read once first.
//
// Wake and close are safe from any goroutine; wait belongs to one owner;
// add and remove to the owner of the socket they are given.
type readyPoller struct {
	epfd   int
	file   *os.File // epfd, registered with Go's netpoller
	rc     syscall.RawConn
	wakefd int // an eventfd in the set, under wakeID
	events []syscall.EpollEvent

	// check is Read's readiness check, made once (a closure made per wait
	// costs three allocations); it leaves its result in n and werr. Owner
	// only, like wait.
	check func(uintptr) bool
	n     int
	werr  error

	pending atomic.Bool // a wake-up is written and not yet drained

	mu     sync.Mutex // makes Wake and close exclusive: no write to a closed fd
	closed bool
}

// wakeID is the id wait never reports: the poller's own wake-up.
const wakeID = -1

func newReadyPoller() (*readyPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	r1, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", errno)
	}
	p := &readyPoller{epfd: epfd, wakefd: int(r1), events: make([]syscall.EpollEvent, 64)}
	p.check = p.epollCheck
	if err := p.addFD(p.wakefd, wakeID); err != nil {
		syscall.Close(p.wakefd)
		syscall.Close(epfd)
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(p.wakefd)
		syscall.Close(epfd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	// A non-blocking fd that is not a regular file goes into the netpoller.
	p.file = os.NewFile(uintptr(epfd), "gilmsg-epoll")
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		syscall.Close(p.wakefd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	return p, nil
}

func (p *readyPoller) addFD(fd, id int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(id)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// add watches s under id (≥ 0). ZMQ_FD is read with a zmq call, so only
// s's owner may call add, like any call on s.
func (p *readyPoller) add(s *zmq.Socket, id int) error {
	fd, err := s.GetFd()
	if err != nil {
		return fmt.Errorf("ZMQ_FD: %w", err)
	}
	return p.addFD(fd, id)
}

// remove stops watching s; call it, from s's owner, before closing s
// unless the poller is closed first.
func (p *readyPoller) remove(s *zmq.Socket) {
	if fd, err := s.GetFd(); err == nil {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	}
}

// wait blocks until a watched socket may have input or Wake is called,
// and appends to ready the ids of the sockets that may. It returns with
// nothing appended after a Wake: the caller then looks at whatever state
// the waker changed.
func (p *readyPoller) wait(ready []int) ([]int, error) {
	err := p.rc.Read(p.check)
	n := p.n
	if err == nil {
		err = p.werr
	}
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ready, ErrClosed
		}
		return ready, fmt.Errorf("epoll_wait: %w", err)
	}
	for _, ev := range p.events[:n] {
		if ev.Fd == wakeID {
			var buf [8]byte
			syscall.Read(p.wakefd, buf[:])
			p.pending.Store(false)
			continue
		}
		ready = append(ready, int(ev.Fd))
	}
	return ready, nil
}

// parksInNetpoller says that a fan-out socket's owner can wait for room
// in a readyPoller ([readyPoller.Park], [zsock.Fanout.ParkIn]).
const parksInNetpoller = true

// Park waits as wait does, for at most d, and discards the ids: a
// [zsock.Parker] for the owner of a poller that watches one socket (a
// fan-out socket waiting for room).
func (p *readyPoller) Park(d time.Duration) error {
	if err := p.file.SetReadDeadline(time.Now().Add(d)); err != nil {
		return fmt.Errorf("epoll fd deadline: %w", err)
	}
	var buf [1]int
	_, err := p.wait(buf[:0])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// epollCheck looks at the set without waiting: true when something in it
// is ready (or epoll_wait failed), so Read returns.
func (p *readyPoller) epollCheck(uintptr) bool {
	for {
		p.n, p.werr = syscall.EpollWait(p.epfd, p.events, 0)
		if p.werr != syscall.EINTR {
			return p.werr != nil || p.n > 0
		}
	}
}

// Wake makes the owner's wait return. Change the state the owner should
// notice first, then call Wake. It never blocks and is harmless after
// close.
func (p *readyPoller) Wake() {
	if !p.pending.CompareAndSwap(false, true) {
		return // the owner has yet to drain: it will see our state change
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		syscall.Write(p.wakefd, one[:])
	}
}

// close releases the epoll set and the wake-up fd; sockets in the set are
// left alone. Safe twice.
func (p *readyPoller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.file.Close()
		syscall.Close(p.wakefd)
	}
}
