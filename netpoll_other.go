//go:build !linux

package gilmsg

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// readyPoller, outside Linux, polls with zmq_poll in short slices, so that
// sockets can be added from other goroutines and Wake needs no socket. The
// Linux version (netpoll_linux.go) waits in Go's netpoller instead; the
// rules it documents for the owner hold here too.
type readyPoller struct {
	mu     sync.Mutex
	socks  map[*zmq.Socket]int
	woken  atomic.Bool
	closed atomic.Bool
}

const wakeID = -1

// parksInNetpoller is false outside Linux: zmq_poll cannot wait for a
// socket's commands alone (an XPUB's POLLIN is its subscriptions, its
// POLLOUT always set), so a fan-out socket waits for room in blocking
// sends there ([zsock.Fanout.ParkIn]).
const parksInNetpoller = false

// pollSlice bounds how late a Wake or a newly added socket is noticed.
const pollSlice = 10 * time.Millisecond

func newReadyPoller() (*readyPoller, error) {
	return &readyPoller{socks: make(map[*zmq.Socket]int)}, nil
}

func (p *readyPoller) add(s *zmq.Socket, id int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.socks[s] = id
	return nil
}

func (p *readyPoller) remove(s *zmq.Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.socks, s)
}

func (p *readyPoller) wait(ready []int) ([]int, error) {
	for {
		if p.closed.Load() {
			return ready, ErrClosed
		}
		if p.woken.Swap(false) {
			return ready, nil
		}
		poller := zmq.NewPoller()
		p.mu.Lock()
		for s := range p.socks {
			poller.Add(s, zmq.POLLIN)
		}
		ids := p.socks
		p.mu.Unlock()
		polled, err := poller.Poll(pollSlice)
		if err != nil {
			return ready, fmt.Errorf("poll: %w", err)
		}
		p.mu.Lock()
		for _, ps := range polled {
			ready = append(ready, ids[ps.Socket])
		}
		p.mu.Unlock()
		if len(ready) > 0 {
			return ready, nil
		}
	}
}

func (p *readyPoller) Wake() { p.woken.Store(true) }

func (p *readyPoller) close() { p.closed.Store(true) }
