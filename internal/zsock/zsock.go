// Package zsock makes the ZeroMQ contexts and sockets of the root
// package and of the operator packages beside it (the replay server, the
// hub-status reader, the gateway): one place that knows fedmsg's socket
// options and libzmq's traps (an unbounded linger that hangs Term, a
// linger of 0 that can abort the process). The root imports it, so it
// cannot import the root: it takes plain values ([Options]), and reads a
// root Config only by its tags ([FromConfig]).
package zsock

import (
	"fmt"
	"reflect"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// OptionError is an option zmq refused, naming the fedmsg config key it
// came from (empty for ZMQ_MAXMSGSIZE, which has none). The root turns it
// into its *ConfigError.
type OptionError struct {
	Key string
	Err error
}

func (e *OptionError) Error() string { return fmt.Sprintf("gilmsg: config key %q: %v", e.Key, e.Err) }
func (e *OptionError) Unwrap() error { return e.Err }

// DefaultLingerMS replaces a negative (infinite) zmq_linger so that Close
// stays bounded; it is fedmsg's own default.
const DefaultLingerMS = 1000

// MinSendLingerMS is the shortest linger a socket that sends multipart
// messages gets, whatever zmq_linger says (only SUB and XSUB, which send
// single-frame subscriptions, keep a linger of 0). libzmq 4.3.4 (and its
// master as of 2026) aborts the whole process with "Resource temporarily
// unavailable (src/session_base.cpp:260)" when a connection fails while
// its session has sent the first frames of a message and the socket's
// pipe no longer lets it read the rest (zeromq/libzmq#3442). A linger of 0
// makes the pipe unreadable at once, so a peer closing at the same moment
// as this socket (every test teardown, any two processes stopping
// together) could trigger it: the relay tests aborted about once in
// fifteen runs, and TestCloseMidMessageNoAbort most times. With a linger,
// the pipe stays readable until the linger runs out, so only a peer that
// fails in the microseconds after it runs out, while this socket still
// holds half a message for it, can trigger the abort. Close still returns
// at once; Term waits up to the linger for a peer that stopped reading.
const MinSendLingerMS = 100

// SendLingerMS is the linger [New] gives a socket of type t asked for
// linger ms: bounded ([DefaultLingerMS] for infinity), and at least
// [MinSendLingerMS] unless t only sends subscriptions.
func SendLingerMS(t zmq.Type, linger int) int {
	if linger < 0 {
		linger = DefaultLingerMS
	}
	if t != zmq.SUB && t != zmq.XSUB {
		linger = max(linger, MinSendLingerMS)
	}
	return linger
}

// Options are the socket options every bus socket gets. A field tagged
// fedmsg is that config key's value ([FromConfig] reads it by the tag);
// MaxMsgSize is max_message_size as the config resolves it.
type Options struct {
	HWM                int `fedmsg:"high_water_mark"`   // ZMQ_SNDHWM and ZMQ_RCVHWM; 0 = no limit
	LingerMS           int `fedmsg:"zmq_linger"`        // as [SendLingerMS] bounds it
	TCPKeepalive       int `fedmsg:"zmq_tcp_keepalive"` // -1 OS default, 0 off, 1 on
	KeepaliveCnt       int `fedmsg:"zmq_tcp_keepalive_cnt"`
	KeepaliveIdle      int `fedmsg:"zmq_tcp_keepalive_idle"`  // s
	KeepaliveIntvl     int `fedmsg:"zmq_tcp_keepalive_intvl"` // s
	ReconnectIvlMS     int `fedmsg:"zmq_reconnect_ivl"`       // -1 = never reconnect
	ReconnectIvlMaxMS  int `fedmsg:"zmq_reconnect_ivl_max"`   // 0 = no backoff
	HeartbeatIvlMS     int `fedmsg:"zmq_heartbeat_ivl"`       // 0 = no heartbeats
	HeartbeatTimeoutMS int `fedmsg:"zmq_heartbeat_timeout"`
	HeartbeatTTLMS     int `fedmsg:"zmq_heartbeat_ttl"`
	// SendWaitMS is how long a fan-out socket with a cap of ours waits
	// for a full subscriber ([Fanout]).
	SendWaitMS int `fedmsg:"zmq_send_wait"`
	// MaxMsgSize is ZMQ_MAXMSGSIZE, checked on receive; 0 or negative = no
	// limit. See the root's transport.go for what exceeding it does.
	MaxMsgSize int64
	// SendHWM, when above 0, is ZMQ_SNDHWM instead of HWM (the root's
	// fanoutHWM).
	SendHWM int
	// RecvHWM, when above 0, is ZMQ_RCVHWM instead of HWM.
	RecvHWM int
}

// FromConfig is the Options of cfg, a *gilmsg.Config: each tagged field
// from the Config field whose mapstructure tag is the same key, and
// MaxMsgSize from its MaxMessageBytes. The root and the operator packages
// beside it (the replay server, the hub-status reader) give their sockets
// these; it reads cfg by its tags because this package cannot name the
// root's type (the root imports it). A key cfg lacks leaves its field 0:
// TestFromConfig holds every key present.
func FromConfig(cfg any) Options {
	var o Options
	c := reflect.Indirect(reflect.ValueOf(cfg))
	if c.Kind() != reflect.Struct {
		return o
	}
	byKey := make(map[string]reflect.Value, c.NumField())
	for i := range c.NumField() {
		if key := c.Type().Field(i).Tag.Get("mapstructure"); key != "" {
			byKey[key] = c.Field(i)
		}
	}
	ov := reflect.ValueOf(&o).Elem()
	for i := range ov.NumField() {
		if f, ok := byKey[ov.Type().Field(i).Tag.Get("fedmsg")]; ok && f.CanInt() {
			ov.Field(i).SetInt(f.Int())
		}
	}
	if m, ok := cfg.(interface{ MaxMessageBytes() int64 }); ok {
		o.MaxMsgSize = m.MaxMessageBytes()
	}
	return o
}

// MaxSockets is every context's ZMQ_MAX_SOCKETS. libzmq's default, 1023,
// stopped a subscription at about 200 endpoints; each endpoint now takes
// three sockets (the SUB and its monitor's two PAIRs), twice when the bus
// also listens for ACKs, so this allows over 2,500 endpoints. A slot costs
// libzmq 12 bytes, allocated with the context's first socket. File
// descriptors run out first unless RLIMIT_NOFILE is raised (Go raises the
// soft limit to the hard one at start): an endpoint takes four (three
// mailboxes and its TCP connection).
const MaxSockets = 16384

// NewContext makes a library-private zmq context with ioThreads I/O threads
// (at least 1) and room for [MaxSockets] sockets. Blocky is cleared so that a socket created without an
// explicit linger (none should be) gets 0 instead of infinity, which would
// hang Term.
func NewContext(ioThreads int) (*zmq.Context, error) {
	zctx, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	if err := zctx.SetIoThreads(max(ioThreads, 1)); err != nil {
		zctx.Term()
		return nil, &OptionError{Key: "io_threads", Err: fmt.Errorf("%d rejected by zmq: %w", ioThreads, err)}
	}
	if err := zctx.SetBlocky(false); err != nil {
		zctx.Term()
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	if err := zctx.SetMaxSockets(MaxSockets); err != nil {
		zctx.Term()
		return nil, fmt.Errorf("ZMQ_MAX_SOCKETS %d: %w", MaxSockets, err)
	}
	return zctx, nil
}

// DefaultFanoutBytes bounds what a socket queues for one peer when
// high_water_mark is 0: see [FanoutHWM].
const DefaultFanoutBytes = 1 << 30

// noLimitFanoutHWM is [FanoutHWM]'s queue when max_message_size is -1
// (no limit), where no count of messages bounds the bytes.
const noLimitFanoutHWM = 128

// FanoutHWM is the high-water mark of a socket that queues for each peer:
// high_water_mark when it is set, else enough messages of
// max_message_size to fill [DefaultFanoutBytes] (at least one). It was at
// least 128, which made the bound 128 × max_message_size above 8 MiB:
// 40 messages of 40 MB, with max_message_size 64 MiB, all stayed queued
// for a subscriber that did not read (1.7 GB). Publishing sockets wait for
// a full subscriber ([Fanout]) and a full SUB stops reading its
// connection, so a short queue slows a burst of big messages but loses
// none.
func FanoutHWM(o Options) int {
	if o.HWM > 0 {
		return o.HWM
	}
	if o.MaxMsgSize <= 0 {
		return noLimitFanoutHWM
	}
	return int(max(DefaultFanoutBytes/o.MaxMsgSize, 1))
}

// New makes a socket of type t with o applied; options must be set
// before bind/connect because pipes copy them when they are created. An
// option zmq rejects is a *[ConfigError] naming the fedmsg key.
//
// A SUB socket's receive queue is bounded as a fan-out socket's send
// queue is ([FanoutHWM]): high_water_mark 0 would leave it no limit, and
// what a reader that stopped (a trigger running its command, a tail
// writing to a stalled pipe) has not taken would grow with what
// publishers send. Full, it stops reading its connection, so the excess
// waits in the publisher's queue and is dropped only past that one's
// limit; full for longer than zmq_heartbeat_timeout, it reads no answer
// to its PINGs either, and makes its connection again.
func New(zctx *zmq.Context, t zmq.Type, o Options) (*zmq.Socket, error) {
	if t == zmq.SUB && o.RecvHWM == 0 {
		o.RecvHWM = FanoutHWM(o)
	}
	s, err := zctx.NewSocket(t)
	if err != nil {
		return nil, fmt.Errorf("new %v socket: %w", t, err)
	}
	linger := SendLingerMS(t, o.LingerMS)
	sndHWM, rcvHWM := o.HWM, o.HWM
	if o.SendHWM > 0 {
		sndHWM = o.SendHWM
	}
	if o.RecvHWM > 0 {
		rcvHWM = o.RecvHWM
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	sets := []struct {
		key string
		val int64
		set func() error
	}{
		{"high_water_mark", int64(sndHWM), func() error { return s.SetSndhwm(sndHWM) }},
		{"high_water_mark", int64(rcvHWM), func() error { return s.SetRcvhwm(rcvHWM) }},
		{"zmq_linger", int64(linger), func() error { return s.SetLinger(ms(linger)) }},
		{"zmq_tcp_keepalive", int64(o.TCPKeepalive), func() error { return s.SetTcpKeepalive(o.TCPKeepalive) }},
		{"zmq_tcp_keepalive_cnt", int64(o.KeepaliveCnt), func() error { return s.SetTcpKeepaliveCnt(o.KeepaliveCnt) }},
		{"zmq_tcp_keepalive_idle", int64(o.KeepaliveIdle), func() error { return s.SetTcpKeepaliveIdle(o.KeepaliveIdle) }},
		{"zmq_tcp_keepalive_intvl", int64(o.KeepaliveIntvl), func() error { return s.SetTcpKeepaliveIntvl(o.KeepaliveIntvl) }},
		{"zmq_reconnect_ivl", int64(o.ReconnectIvlMS), func() error { return s.SetReconnectIvl(ms(o.ReconnectIvlMS)) }},
		{"zmq_reconnect_ivl_max", int64(o.ReconnectIvlMaxMS), func() error { return s.SetReconnectIvlMax(ms(o.ReconnectIvlMaxMS)) }},
	}
	// Not on a socket that only sends (PUB, XPUB): its PINGs queue behind
	// the messages it sends, so a subscriber that is slow but reading,
	// with more than zmq_heartbeat_timeout of them still to read, was
	// taken for dead and its connection closed with all that was queued
	// for it. A 100,000-message burst to a Python tail lost 78% so. The
	// subscriber's own PINGs go up an idle direction instead, and a peer
	// answers them without being told to: a dead link is still noticed
	// by the side that reconnects, and a subscriber that stops (its TTL)
	// still freed.
	if o.HeartbeatIvlMS > 0 && t != zmq.PUB && t != zmq.XPUB {
		sets = append(sets, []struct {
			key string
			val int64
			set func() error
		}{
			{"zmq_heartbeat_ivl", int64(o.HeartbeatIvlMS), func() error { return s.SetHeartbeatIvl(ms(o.HeartbeatIvlMS)) }},
			{"zmq_heartbeat_timeout", int64(o.HeartbeatTimeoutMS), func() error { return s.SetHeartbeatTimeout(ms(o.HeartbeatTimeoutMS)) }},
			{"zmq_heartbeat_ttl", int64(o.HeartbeatTTLMS), func() error { return s.SetHeartbeatTtl(ms(o.HeartbeatTTLMS)) }},
		}...)
	}
	if o.MaxMsgSize > 0 {
		// zmq reads 0 as "0 bytes allowed", so only a real limit is set.
		sets = append(sets, struct {
			key string
			val int64
			set func() error
		}{"", o.MaxMsgSize, func() error { return s.SetMaxmsgsize(o.MaxMsgSize) }})
	}
	for _, opt := range sets {
		if err := opt.set(); err != nil {
			s.Close()
			if opt.key == "" { // not a fedmsg key
				return nil, &OptionError{Err: fmt.Errorf("ZMQ_MAXMSGSIZE %d rejected by zmq: %w", opt.val, err)}
			}
			return nil, &OptionError{Key: opt.key, Err: fmt.Errorf("%d rejected by zmq: %w", opt.val, err)}
		}
	}
	return s, nil
}

// IsEAGAIN reports a DONTWAIT call that found nothing to do.
func IsEAGAIN(err error) bool { return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) }
