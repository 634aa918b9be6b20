package zsock

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// DefaultSendWaitMS is zmq_send_wait's default: how long a fan-out socket
// with a cap of ours waits for a full subscriber before sending past it.
const DefaultSendWaitMS = 2000

// Fanout sends on an XPUB whose per-subscriber queue (ZMQ_SNDHWM) is a cap
// of ours rather than the operator's high_water_mark: a burst to a slow
// but live subscriber then waits for it instead of being dropped, and one
// that stopped reading costs one bounded wait, not its whole queue growing
// without end nor a wait for every message.
//
// libzmq's XPUB drops a message for each subscriber whose queue is full.
// With ZMQ_XPUB_NODROP on, it sends nothing and answers EAGAIN when any
// subscriber the message is for is full, and a blocking send waits,
// up to ZMQ_SNDTIMEO, for room. Send uses that, and when the wait runs
// out it turns NODROP off, which libzmq reads at each send: that message
// then goes to every subscriber with room and is dropped for the full
// ones. libzmq also sets a subscriber it dropped for aside, sending it
// nothing and no longer counting it as full, until it has read half its
// queue. The next send tries NODROP again without waiting: it succeeds
// unless another subscriber has filled up since (then that message is
// sent past it too, and the next one tries again), and from then on
// sends wait again. A subscriber that stopped reading thus costs one
// wait; one that reads a little now and then, one wait each time it is
// let back in and fills up again.
//
// (Holding off NODROP for a while after a wait ran out was tried: with
// 100 stuck subscribers among 200, the 100 that read, slowly on a loaded
// machine, lost messages all through the hold. A subscriber that reads
// just fast enough to end each wait holds the publisher to its pace
// whatever Send does: that is waiting for slow subscribers.)
//
// A Fanout belongs to the owner of its socket; its counters may be read
// from anywhere.
type Fanout struct {
	sock *zmq.Socket
	wait time.Duration
	log  *slog.Logger
	what string // names the socket in the log

	lossy   bool        // NODROP is off: the last send went past full subscribers
	stopped atomic.Bool // Stop was called: no wait from now on
	parker  Parker      // waits for room in Go's netpoller; nil: blocking sends

	waited   atomic.Uint64 // sends that found a full subscriber and waited
	timedOut atomic.Uint64 // waits that ran out: sent past the full ones
	past     atomic.Uint64 // SendPast's sends that found a full subscriber
}

// waitSlice is the longest blocking send of a wait: [Fanout.Stop] ends a
// wait within it.
const waitSlice = 100 * time.Millisecond

// pastWait is how long [Fanout.SendPast] waits for room before it sends
// past the full subscribers.
const pastWait = waitSlice

// NewFanout makes s, an XPUB not yet bound or connected, wait up to wait
// for a full subscriber: ZMQ_XPUB_NODROP on, and blocking sends of at
// most [waitSlice] (ZMQ_SNDTIMEO), or parks of as long ([Fanout.ParkIn]),
// until wait has passed. what names the
// socket in the log line said when a wait runs out.
func NewFanout(s *zmq.Socket, wait time.Duration, log *slog.Logger, what string) (*Fanout, error) {
	if err := s.SetXpubNodrop(true); err != nil {
		return nil, fmt.Errorf("ZMQ_XPUB_NODROP: %w", err)
	}
	if err := s.SetSndtimeo(min(wait, waitSlice)); err != nil {
		return nil, &OptionError{Key: "zmq_send_wait", Err: fmt.Errorf("%v rejected by zmq: %w", wait, err)}
	}
	return &Fanout{sock: s, wait: wait, log: log, what: what}, nil
}

// A Parker parks the goroutine sending on a Fanout's socket, in Go's
// netpoller, until the socket's ZMQ_FD signals (libzmq has commands for
// it, among them the word that a subscriber read and made room), Wake is
// called, or d has passed, whichever is first. Park belongs to the
// socket's owner; Wake is safe from any goroutine.
type Parker interface {
	Park(d time.Duration) error
	Wake()
}

// ParkIn makes Send wait for room in p rather than in blocking sends,
// cgo calls that hold an OS thread asleep in the kernel for each wait
// (the runtime hands its P to another thread, and the woken thread must
// get one back). The owner calls it before the first send.
func (f *Fanout) ParkIn(p Parker) { f.parker = p }

// Send sends one message through send, which must send it with
// ZMQ_DONTWAIT on its first frame when block is false, and without it
// when true. A nil Fanout (a socket with the operator's own cap, which
// drops as fedmsg's does and never answers EAGAIN) sends blocking.
//
// The first try does not wait, so that a message with room costs what it
// did without the cap; only a full subscriber costs more.
func (f *Fanout) Send(send func(block bool) error) error {
	if f == nil {
		return send(true)
	}
	if f.lossy {
		return f.sendLossy(send)
	}
	err := send(false)
	if err == nil || !IsEAGAIN(err) {
		return err
	}
	f.waited.Add(1)
	if err = f.waitRoom(send, f.wait); err == nil || !IsEAGAIN(err) {
		return err
	}
	level := slog.LevelDebug
	if f.timedOut.Add(1) == 1 {
		level = slog.LevelWarn // once: the count says the rest
	}
	f.log.Log(context.Background(), level, "gilmsg: a subscriber has not read its queue for the whole send wait: sending past full subscribers, which lose those messages",
		slog.String("socket", f.what), slog.Duration("zmq_send_wait", f.wait), slog.Uint64("times", f.timedOut.Load()))
	if err := f.setLossy(true); err != nil {
		return err
	}
	return send(true)
}

// waitRoom retries send until it finds room, fails otherwise, Stop is
// called or wait has passed (then EAGAIN): parked in f.parker when the
// owner gave one, else in blocking sends.
func (f *Fanout) waitRoom(send func(block bool) error, wait time.Duration) error {
	if f.parker != nil {
		return f.waitParked(send, wait)
	}
	return f.waitBlocking(send, wait)
}

// waitBlocking retries with blocking sends of at most [waitSlice] until
// one succeeds, fails otherwise, Stop is called or the wait has passed
// (then EAGAIN).
func (f *Fanout) waitBlocking(send func(block bool) error, wait time.Duration) error {
	for start := time.Now(); ; {
		if err := send(true); err == nil || !IsEAGAIN(err) || f.stopped.Load() || time.Since(start) >= wait {
			return err
		}
	}
}

// waitParked is waitBlocking with the waits in f.parker, and sends that
// do not block.
func (f *Fanout) waitParked(send func(block bool) error, wait time.Duration) error {
	for start := time.Now(); ; {
		// ZMQ_EVENTS makes libzmq process the socket's commands now (a
		// send does so at most once a millisecond), the word that room
		// was made among them, and re-arms ZMQ_FD's signal: Park wakes
		// at the next command.
		if _, err := f.sock.GetEvents(); err != nil {
			return fmt.Errorf("ZMQ_EVENTS: %w", err)
		}
		err := send(false)
		left := wait - time.Since(start)
		if err == nil || !IsEAGAIN(err) || f.stopped.Load() || left <= 0 {
			return err
		}
		if err := f.parker.Park(min(left, waitSlice)); err != nil {
			return err
		}
	}
}

// Stop ends the wait of a Send under way, and of every later one, within
// [waitSlice]: the message is then sent past the full subscribers. The
// socket's owner calls it, from any goroutine, when it closes, so that
// closing never waits zmq_send_wait for a subscriber that stopped
// reading.
func (f *Fanout) Stop() {
	if f != nil {
		f.stopped.Store(true)
		if f.parker != nil {
			f.parker.Wake()
		}
	}
}

// SendPast is Send for a message that must not wait long for any
// subscriber: with room everywhere it costs what Send does; else it waits
// for room at most pastWait (a subscriber that reads, behind a burst),
// then is sent past the full subscribers, as after a wait ran out, but
// without counting or logging a wait. An ACK is such a message: the one
// peer it is for reads it promptly, and a wait for an unrelated stuck
// subscriber would make its publisher time out although the message was
// received.
func (f *Fanout) SendPast(send func(block bool) error) error {
	if f == nil {
		return send(true)
	}
	if f.lossy {
		return f.sendLossy(send)
	}
	if err := send(false); err == nil || !IsEAGAIN(err) {
		return err
	}
	// A subscriber that reads all along is found full by a burst (a
	// publisher's queue of ACKs): libzmq's I/O thread has yet to pass on
	// the messages before, and the socket to learn that it did. A short
	// wait tells that one from a stuck one; sent past at once, the rest
	// of the burst was lost for the very peer the ACKs were for.
	if err := f.waitRoom(send, pastWait); err == nil || !IsEAGAIN(err) {
		return err
	}
	f.past.Add(1)
	if err := f.setLossy(true); err != nil {
		return err
	}
	return send(true)
}

// SentPast is how many of SendPast's sends found a full subscriber and
// went past it without waiting.
func (f *Fanout) SentPast() uint64 {
	if f == nil {
		return 0
	}
	return f.past.Load()
}

// sendLossy tries once without waiting with NODROP on, and else sends
// with it off.
func (f *Fanout) sendLossy(send func(block bool) error) error {
	if err := f.setLossy(false); err != nil {
		return err
	}
	err := send(false)
	if err == nil {
		f.log.Debug("gilmsg: subscribers have room again: sends wait for full ones again", slog.String("socket", f.what))
		return nil
	}
	if !IsEAGAIN(err) {
		return err
	}
	if err := f.setLossy(true); err != nil {
		return err
	}
	return send(true)
}

func (f *Fanout) setLossy(lossy bool) error {
	if err := f.sock.SetXpubNodrop(!lossy); err != nil {
		return fmt.Errorf("ZMQ_XPUB_NODROP: %w", err)
	}
	f.lossy = lossy
	return nil
}

// Waited is how many sends found a full subscriber and waited for it.
func (f *Fanout) Waited() uint64 {
	if f == nil {
		return 0
	}
	return f.waited.Load()
}

// TimedOut is how many of those waits ran out, after each of which that
// message was sent past the full subscribers.
func (f *Fanout) TimedOut() uint64 {
	if f == nil {
		return 0
	}
	return f.timedOut.Load()
}
