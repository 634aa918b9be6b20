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

// lossyHoldWaits is how many send waits a fan-out socket that waited in
// vain sends past full subscribers before it waits again (see
// [Fanout.Send]): a subscriber that reads just enough to be let back in
// can then stall the publisher for at most 1/(1+lossyHoldWaits) of the
// time, not hold it to its own pace.
const lossyHoldWaits = 5

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
// ones, which libzmq also stops counting until they have read half their
// queue. It stays so for lossyHoldWaits waits (sending past full
// subscribers without waiting), then tries NODROP without waiting; once
// a send so succeeds it waits again.
//
// A Fanout belongs to the owner of its socket; its counters may be read
// from anywhere.
type Fanout struct {
	sock *zmq.Socket
	wait time.Duration
	log  *slog.Logger
	what string // names the socket in the log

	lossy   bool      // NODROP is off
	probeAt time.Time // when lossy, when to try NODROP again

	waited   atomic.Uint64 // sends that found a full subscriber and waited
	timedOut atomic.Uint64 // waits that ran out: sent past the full ones
}

// NewFanout makes s, an XPUB not yet bound or connected, wait up to wait
// for a full subscriber: ZMQ_XPUB_NODROP on, ZMQ_SNDTIMEO wait. what
// names the socket in the log line said when a wait runs out.
func NewFanout(s *zmq.Socket, wait time.Duration, log *slog.Logger, what string) (*Fanout, error) {
	if err := s.SetXpubNodrop(true); err != nil {
		return nil, fmt.Errorf("ZMQ_XPUB_NODROP: %w", err)
	}
	if err := s.SetSndtimeo(wait); err != nil {
		return nil, &OptionError{Key: "zmq_send_wait", Err: fmt.Errorf("%v rejected by zmq: %w", wait, err)}
	}
	return &Fanout{sock: s, wait: wait, log: log, what: what}, nil
}

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
	if err = send(true); err == nil || !IsEAGAIN(err) {
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

// sendLossy sends with NODROP off, after trying once without waiting
// with it on when the hold is over.
func (f *Fanout) sendLossy(send func(block bool) error) error {
	if time.Now().Before(f.probeAt) {
		return send(true)
	}
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
	if lossy {
		f.probeAt = time.Now().Add(lossyHoldWaits * f.wait)
	}
	return nil
}

// Waited is how many sends found a full subscriber and waited for it.
func (f *Fanout) Waited() uint64 {
	if f == nil {
		return 0
	}
	return f.waited.Load()
}

// TimedOut is how many of those waits ran out, each followed by a spell
// of sends that drop for full subscribers.
func (f *Fanout) TimedOut() uint64 {
	if f == nil {
		return 0
	}
	return f.timedOut.Load()
}
