package gilmsg

// The ZeroMQ layer under the bus and the relay. Everything here is
// unexported except NoEndpointError:
//
//	newContext(ioThreads)                  a private zmq context
//	sockOptsFromConfig / newSocket         sockets with fedmsg's options
//	bindFirst / bindAddress                fedmsg's bind rule, *NoEndpointError
//	closeAll(zctx, socks...)               close, then Term
//	readyPoller (netpoll_linux.go)         wait for many sockets in Go's netpoller
//	connMonitor, monitorGroup              count handshaken connections, many
//	  (+ withLostHook)                     sockets' monitors on one goroutine
//	newXPub / readSubscriptions /
//	subscriptionTracker                    know which subscriptions a publisher has
//
// The rules it follows:
//
//   - A *zmq.Socket is not goroutine-safe. Each socket has one owner
//     goroutine; handing it to another goroutine is fine only across a
//     happens-before edge (a channel operation, a go statement, a mutex).
//     Other goroutines reach an owner through Go, never through a shared
//     socket: [readyPoller.Wake] is callable from anywhere.
//   - A library makes its own zmq.Context ([newContext]) and terminates it
//     last ([closeAll]). Context.Term blocks until every socket of the
//     context is closed and its linger has run out, so: stop the goroutines
//     that own sockets (connMonitor.Close, a relay's Run), close the sockets,
//     then Term. A socket left open makes Term hang forever.
//   - Linger is always bounded ([newSocket]), so Close and Term are too.
//     It is also never 0 on a socket that sends multipart messages over a
//     connection ([zsock.MinSendLingerMS]): libzmq would abort the process.
//   - Nothing sleeps to dodge the slow-joiner problem: [connMonitor] reports
//     completed ZMTP handshakes and [subscriptionTracker] reports the
//     subscriptions an XPUB publisher has actually applied.
//   - Readers wait in Go's netpoller on the sockets' ZMQ_FD
//     ([readyPoller]), not in a cgo zmq_poll, which would hold an OS
//     thread and a P per waiting goroutine. They are woken with an eventfd
//     ([readyPoller.Wake]) rather than poll timeouts, so stopping costs no
//     latency. (The few loops left in zmq_poll, the hub status check, gap
//     recovery and the replay client, poll in short slices.)
//   - pebbe/zmq4 retries calls interrupted by signals (EINTR) by default
//     (SetRetryAfterEINTR true). We keep that: loops are woken by Wake,
//     never by EINTR, so a signal handler need not clear it.
//
// What a completed handshake does and does not guarantee (libzmq 4.3):
//
//   - A SUB queues its subscriptions on a connection's pipe as soon as it
//     connects and writes them right after the ZMTP handshake. So when the
//     SUB's monitor reports EVENT_HANDSHAKE_SUCCEEDED the subscription is on
//     its way, but the remote PUB applies it only when its owner next makes
//     a zmq call that processes commands, and zmq_send throttles that to
//     about once a millisecond. A message published in that window is
//     dropped for this subscriber. With a plain PUB peer (every Python
//     fedmsg process) no exact signal exists; the window is small.
//   - A *bound* SUB is different: a new peer's pipe is attached, and the
//     subscriptions written to it, only when the SUB's owner next calls
//     into zmq (an owner blocked in zmq_poll on it does so at once; one
//     busy elsewhere does not, and messages sent meanwhile are lost).
//   - The PUB side's monitor sees EVENT_ACCEPTED then
//     EVENT_HANDSHAKE_SUCCEEDED, which says nothing about subscriptions
//     either.
//   - An XPUB is wire-identical to a PUB for subscribers (libzmq SUBs accept
//     both), and hands its owner every subscription it has applied to its
//     filter. Once the owner reads "\x01prefix", every later send on that
//     socket reaches that subscriber: an exact readiness signal. Our own
//     publishers can therefore use [newXPub] + [readSubscriptions] +
//     [subscriptionTracker].
//
// ZMQ_MAXMSGSIZE ([sockOpts.MaxMsgSize]) applies to what a socket receives.
// A peer that sends a larger message is a protocol error: libzmq 4.3.4
// closes that connection, and a *connecting* socket then never reconnects to
// that endpoint (only connection errors and timeouts trigger a reconnect).
// The connection is lost silently except for EVENT_DISCONNECTED, so the
// owner of a connecting socket with a size limit should pass
// [withLostHook] to its monitor and call Disconnect+Connect on that
// endpoint, which restores it. A bound socket is unaffected: the remote
// (connecting) side sees a plain disconnect and reconnects.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"

	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// sockOpts are the options of every socket; see [zsock.Options].
type sockOpts = zsock.Options

// The linger bounds of [zsock.SendLingerMS], under their old names for
// this package's tests.
const (
	defaultLingerMS = zsock.DefaultLingerMS
	minSendLingerMS = zsock.MinSendLingerMS
)

// DefaultFanoutBytes is what a socket that queues messages for each peer
// may hold for one that does not read (a stopped process, a dead
// network), and what a SUB socket may hold from one publisher for a
// reader that stopped, at most: when high_water_mark is 0, fedmsg's
// default and "no limit", it queues [DefaultFanoutBytes] /
// max_message_size messages ([zsock.FanoutHWM]): 128 of 8 MiB. A
// publishing socket then waits for a full subscriber rather than drop a
// burst to one that is slow but reading, up to zmq_send_wait ([newXPub]).
// The gateway bounds its clients the same way (package gateway, through
// [WithRelayQueueCap]).
const DefaultFanoutBytes = zsock.DefaultFanoutBytes

// fanoutHWM is [zsock.FanoutHWM].
func fanoutHWM(o sockOpts) int { return zsock.FanoutHWM(o) }

// sockOptsFromConfig reads the fedmsg keys, and max_message_size: see
// [zsock.FromConfig], which the operator packages use too.
func sockOptsFromConfig(c *Config) sockOpts { return zsock.FromConfig(c) }

// newContext is [zsock.NewContext] with a refused option as a
// *[ConfigError].
func newContext(ioThreads int) (*zmq.Context, error) {
	zctx, err := zsock.NewContext(ioThreads)
	return zctx, zsockConfigError(err)
}

// newSocket is [zsock.New] with a refused option as a *[ConfigError]
// naming the fedmsg key.
func newSocket(zctx *zmq.Context, t zmq.Type, o sockOpts) (*zmq.Socket, error) {
	s, err := zsock.New(zctx, t, o)
	return s, zsockConfigError(err)
}

func zsockConfigError(err error) error {
	var oe *zsock.OptionError
	if errors.As(err, &oe) {
		return &ConfigError{Key: oe.Key, Err: oe.Err}
	}
	return err
}

// endpointError is a failed connect or bind of addr: an *[EndpointError],
// inside a *[ConfigError] when the address is malformed. libzmq parses the
// address before it does anything else, and refuses a malformed one with
// EINVAL, or with EPROTONOSUPPORT/ENOCOMPATPROTO for a transport it does
// not have or the socket cannot use.
func endpointError(op, name, addr string, err error) error {
	var malformed bool
	for _, e := range []syscall.Errno{syscall.EINVAL, syscall.EPROTONOSUPPORT} {
		malformed = malformed || errors.Is(err, e) || errors.Is(err, zmq.Errno(e))
	}
	malformed = malformed || errors.Is(err, zmq.ENOCOMPATPROTO)
	ee := &EndpointError{Op: op, Name: name, Endpoint: addr, Err: err}
	if malformed {
		return &ConfigError{Key: "endpoints", Err: ee}
	}
	return ee
}

// closeAll closes socks (nil ones skipped) and then terminates zctx. The
// caller must own every socket, i.e. the goroutines that used them have
// stopped, and must have closed every other socket of the context,
// connMonitors included, or Term blocks for good.
func closeAll(zctx *zmq.Context, socks ...*zmq.Socket) error {
	var errs []error
	for _, s := range socks {
		if s != nil {
			if err := s.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if zctx != nil {
		if err := zctx.Term(); err != nil {
			errs = append(errs, fmt.Errorf("zmq term: %w", err))
		}
	}
	return errors.Join(errs...)
}

// isEAGAIN reports a DONTWAIT call that found nothing to do.
func isEAGAIN(err error) bool { return zsock.IsEAGAIN(err) }

// inprocAddr names an inproc endpoint. Names are per context and a closed
// socket releases its name asynchronously, so they are random, not reused.
func inprocAddr(kind string) string {
	return fmt.Sprintf("inproc://gilmsg-%s-%016x", kind, rand.Uint64())
}

// NoEndpointError says that none of a name's addresses could be bound.
// It matches [ErrNoEndpoint].
type NoEndpointError struct {
	Name  string   // the service name whose endpoints were tried
	Tried []string // the addresses given to bind, in order
	Errs  []error  // Errs[i] is why Tried[i] failed
}

func (e *NoEndpointError) Error() string {
	if len(e.Tried) == 0 {
		return fmt.Sprintf("%v for %q: no address configured", ErrNoEndpoint, e.Name)
	}
	parts := make([]string, len(e.Tried))
	for i, addr := range e.Tried {
		reason := "unknown error"
		if i < len(e.Errs) && e.Errs[i] != nil {
			reason = e.Errs[i].Error()
			reason = strings.ToLower(reason[:1]) + reason[1:]
		}
		parts[i] = fmt.Sprintf("%s (%s)", addr, reason)
	}
	return fmt.Sprintf("%v for %q: tried %s", ErrNoEndpoint, e.Name, strings.Join(parts, ", "))
}

// Unwrap returns [ErrNoEndpoint].
func (e *NoEndpointError) Unwrap() error { return ErrNoEndpoint }

// bindAddress turns a configured endpoint into the address to bind.
// fedmsg binds "tcp://host:PORT" as "tcp://*:PORT" (the host names how
// others reach us, not an interface). A literal loopback IP is kept so
// that a loopback-only config (and every test) stays off the network, and
// a "*" port is kept so that "tcp://127.0.0.1:*" picks a free port.
// Anything that is not tcp:// (ipc://, inproc://) is bound as given.
func bindAddress(addr string) string {
	rest, ok := strings.CutPrefix(addr, "tcp://")
	if !ok {
		return addr
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return addr // no port: let zmq reject it with its own message
	}
	host, port := rest[:i], rest[i+1:]
	if port == "*" {
		return addr
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); ip != nil && ip.IsLoopback() {
		return addr
	}
	return "tcp://*:" + port
}

// bindFirst binds s to the first of addrs that can be bound (see
// [bindAddress]) and returns the endpoint actually bound, read back with
// ZMQ_LAST_ENDPOINT: "tcp://0.0.0.0:3000" for "tcp://host:3000", the real
// port for "tcp://127.0.0.1:*". None bindable → *[NoEndpointError].
func bindFirst(s *zmq.Socket, name string, addrs []string) (string, error) {
	e := &NoEndpointError{Name: name}
	for _, addr := range addrs {
		b := bindAddress(addr)
		err := s.Bind(b)
		if err == nil {
			ep, err := s.GetLastEndpoint()
			if err != nil {
				return "", fmt.Errorf("reading endpoint bound at %s: %w", b, err)
			}
			return ep, nil
		}
		e.Tried = append(e.Tried, b)
		e.Errs = append(e.Errs, err)
	}
	return "", e
}
