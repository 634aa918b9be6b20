// Package gateway is fedmsg-gateway: it collects the whole bus and
// republishes it, byte for byte and unvalidated, on one port where plain
// ZeroMQ SUB clients outside the bus connect. It is a package of its own
// because it is an operator program, not part of the API a service uses
// in place of fedmsg.publish; it is built on the root package's [gilmsg.Relay]
// alone (subscribing with [gilmsg.WithRelaySources] instead of binding
// relay_inbound), so it forwards with the relay's zero-copy path and
// counts, hooks and logs as a relay does.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// Config keys of fedmsg's gateway, with their defaults.
const (
	PortKey = "fedmsg.consumers.gateway.port"
	HWMKey  = "fedmsg.consumers.gateway.high_water_mark"

	DefaultPort = 9940
	DefaultHWM  = 1000
)

// Gateway subscribes to every endpoint of every name but relay_inbound and
// republishes each message, frame by frame and byte for byte, on its own
// PUB socket (tcp://*:<fedmsg.consumers.gateway.port>). Nothing is
// validated: clients validate what they need to.
//
// Memory stays bounded however slow a client is: the PUB socket keeps at
// most fedmsg.consumers.gateway.high_water_mark messages per client and
// drops the newest for a client that is that far behind. Unset (or 0,
// which would mean no limit), it is fedmsg's 1000, or fewer when 1000
// messages of max_message_size would be past [gilmsg.DefaultFanoutBytes]:
// 128 with the default 8 MiB; and then a full client makes the gateway
// wait for it, up to zmq_send_wait, rather than lose a burst, after which
// that message is sent past the full clients ([gilmsg.Config.ZMQSendWait]).
//
// Run, Close and Stats are safe from any goroutine.
type Gateway struct {
	r       *gilmsg.Relay
	sources int
}

// Option configures a [Gateway].
type Option func(*options)

type options struct {
	relay []gilmsg.RelayOption
	bind  string
	log   *slog.Logger
}

// WithRelayOptions passes options of the gateway's forwarder, a
// [gilmsg.Relay]: [gilmsg.WithRelayHooks], say. Default: none.
func WithRelayOptions(opts ...gilmsg.RelayOption) Option {
	return func(o *options) { o.relay = append(o.relay, opts...) }
}

// WithBind binds addr instead of tcp://*:<port>: a loopback address, say,
// or "tcp://127.0.0.1:*" for a free port. Default (and ""): the port of
// [PortKey].
func WithBind(addr string) Option { return func(o *options) { o.bind = addr } }

// WithLogger logs the gateway's start, stop and oddities, its config
// warnings included, through l. Default: nothing is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New connects to the bus's endpoints and binds the gateway's PUB socket.
// Nothing is forwarded until [Gateway.Run].
func New(cfg *gilmsg.Config, opts ...Option) (*Gateway, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: gateway.New needs a config", gilmsg.ErrConfig)
	}
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.bind == "" {
		port, err := cfg.ExtraInt(PortKey, DefaultPort)
		if err != nil {
			return nil, err
		}
		if port <= 0 || port > 65535 {
			return nil, &gilmsg.ConfigError{Key: PortKey, Err: fmt.Errorf("%d: not a TCP port", port)}
		}
		o.bind = "tcp://*:" + strconv.Itoa(port)
	}
	hwm, err := cfg.ExtraInt(HWMKey, -1)
	if err != nil {
		return nil, err
	}
	if hwm > math.MaxInt32 { // libzmq's option is a C int: it would wrap, to 0 (no limit) for 2^32
		return nil, &gilmsg.ConfigError{Key: HWMKey, Err: fmt.Errorf("%d: want at most %d messages", hwm, math.MaxInt32)}
	}
	// The operator's bound drops for a full client, as fedmsg's does; the
	// default one is a bound on memory, which waits for a full client up
	// to zmq_send_wait instead ([gilmsg.WithRelayQueueCap]).
	configured, queue := hwm, gilmsg.WithRelayQueue
	if hwm <= 0 {
		hwm, queue = defaultHWM(cfg.MaxMessageBytes()), gilmsg.WithRelayQueueCap
	}
	sources := maps.Clone(cfg.Endpoints)
	delete(sources, "relay_inbound") // where active publishers send, not a publisher
	g := &Gateway{}
	for _, addrs := range sources {
		g.sources += len(addrs)
	}
	ropts := append([]gilmsg.RelayOption{gilmsg.WithRelayLogger(o.log)}, o.relay...)
	ropts = append(ropts, gilmsg.WithRelaySources(sources), gilmsg.WithRelayOutbound("gateway", o.bind), queue(hwm))
	if g.r, err = gilmsg.NewRelay(cfg, ropts...); err != nil {
		return nil, err
	}
	if configured != -1 && configured <= 0 {
		o.log.Warn("gilmsg: gateway high_water_mark must bound each client's queue; using the default",
			"key", HWMKey, "value", configured, "default", DefaultHWM)
	}
	return g, nil
}

// defaultHWM is the gateway's queue per client when [HWMKey] is not set:
// [DefaultHWM], fedmsg's, or fewer when that many messages of
// maxMsgSize would be past [gilmsg.DefaultFanoutBytes].
func defaultHWM(maxMsgSize int64) int {
	if maxMsgSize <= 0 {
		return DefaultHWM
	}
	return int(min(DefaultHWM, max(gilmsg.DefaultFanoutBytes/maxMsgSize, 1)))
}

// Endpoint returns the address the gateway's PUB socket is bound at, as
// ZeroMQ reports it.
func (g *Gateway) Endpoint() string { return g.r.OutboundEndpoint() }

// Sources is the number of bus endpoints the gateway subscribes to.
func (g *Gateway) Sources() int { return g.sources }

// Run forwards messages until ctx ends, returning ctx.Err(), or until the
// gateway is closed, returning [gilmsg.ErrClosed]. See [gilmsg.Relay.Run].
func (g *Gateway) Run(ctx context.Context) error { return g.r.Run(ctx) }

// Stats returns the gateway's counters so far.
func (g *Gateway) Stats() gilmsg.RelayStats { return g.r.Stats() }

// Close stops Run and closes the sockets, giving unsent messages up to
// zmq_linger to leave. It is safe to call twice.
func (g *Gateway) Close() error { return g.r.Close() }
