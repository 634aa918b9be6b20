package gilmsg

import (
	"context"
	"fmt"
	"strconv"

	zmq "github.com/pebbe/zmq4"
)

// Config keys of fedmsg's gateway, with their defaults.
const (
	GatewayPortKey = "fedmsg.consumers.gateway.port"
	GatewayHWMKey  = "fedmsg.consumers.gateway.high_water_mark"

	DefaultGatewayPort = 9940
	DefaultGatewayHWM  = 1000
)

// Gateway is fedmsg-gateway: it subscribes to every endpoint of every
// name but relay_inbound and republishes each message, frame by frame and
// byte for byte, on its own PUB socket (tcp://*:<fedmsg.consumers.gateway.port>),
// where plain ZeroMQ SUB clients outside the bus connect. Nothing is
// validated: clients validate what they need to.
//
// Memory stays bounded however slow a client is: the PUB socket keeps at
// most fedmsg.consumers.gateway.high_water_mark messages per client and
// drops the newest for a client that is that far behind. Unset (or 0,
// which would mean no limit), it is fedmsg's 1000, or fewer when 1000
// messages of max_message_size would be past [DefaultFanoutBytes]: 128
// with the default 8 MiB.
//
// Run, Close and Stats are safe from any goroutine.
type Gateway struct {
	r       *Relay
	sources int
}

// GatewayOption configures a [Gateway].
type GatewayOption func(*gatewayOptions)

type gatewayOptions struct {
	relay []RelayOption
	bind  string
}

// WithGatewayRelayOptions passes logging and hooks options
// ([WithRelayLogger], [WithRelayHooks]) to the gateway's forwarder.
func WithGatewayRelayOptions(opts ...RelayOption) GatewayOption {
	return func(o *gatewayOptions) { o.relay = append(o.relay, opts...) }
}

// WithGatewayBind binds addr instead of tcp://*:<port>: a loopback
// address, say, or "tcp://127.0.0.1:*" for a free port.
func WithGatewayBind(addr string) GatewayOption { return func(o *gatewayOptions) { o.bind = addr } }

// NewGateway connects to the bus's endpoints and binds the gateway's PUB
// socket. Nothing is forwarded until [Gateway.Run].
func NewGateway(cfg *Config, opts ...GatewayOption) (*Gateway, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: NewGateway needs a config", ErrConfig)
	}
	var o gatewayOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.bind == "" {
		port, err := cfg.ExtraInt(GatewayPortKey, DefaultGatewayPort)
		if err != nil {
			return nil, err
		}
		if port <= 0 || port > 65535 {
			return nil, &ConfigError{Key: GatewayPortKey, Err: fmt.Errorf("%d: not a TCP port", port)}
		}
		o.bind = "tcp://*:" + strconv.Itoa(port)
	}
	hwm, err := cfg.ExtraInt(GatewayHWMKey, -1)
	if err != nil {
		return nil, err
	}
	set := hwm != -1
	g := &Gateway{}
	g.r, err = newRelay(cfg, o.relay, func(r *Relay, cfg *Config) error {
		n, err := r.openGateway(cfg, o.bind, hwm)
		g.sources = n
		return err
	})
	if err != nil {
		return nil, err
	}
	if set && hwm <= 0 {
		g.r.log.Warn("gilmsg: gateway high_water_mark must bound each client's queue; using the default",
			"key", GatewayHWMKey, "value", hwm, "default", DefaultGatewayHWM)
	}
	return g, nil
}

// openGateway sets up a gateway's sockets and returns how many endpoints
// its SUB socket connects to.
func (r *Relay) openGateway(cfg *Config, bind string, hwm int) (int, error) {
	so := sockOptsFromConfig(cfg)
	var err error
	if r.sub, err = newSocket(r.zctx, zmq.SUB, so); err != nil {
		return 0, err
	}
	if err := r.sub.SetSubscribe(""); err != nil {
		return 0, fmt.Errorf("gilmsg: gateway subscribe: %w", err)
	}
	if r.mon, err = newConnMonitor(r.zctx, r.sub, withLostHook(r.markLost)); err != nil {
		return 0, err
	}
	n := 0
	for _, name := range sortedKeys(cfg.Endpoints) {
		if name == "relay_inbound" {
			continue
		}
		for _, addr := range cfg.Endpoints[name] {
			if err := r.sub.Connect(addr); err != nil {
				return 0, &ConfigError{Key: "endpoints", Err: fmt.Errorf("%s: %s: %w", name, addr, err)}
			}
			n++
		}
	}
	r.inbound = fmt.Sprintf("%d endpoints", n)
	if hwm <= 0 {
		hwm = gatewayHWM(so)
	}
	so.HWM = hwm
	if r.pub, err = newSocket(r.zctx, zmq.PUB, so); err != nil {
		return 0, err
	}
	if r.outbound, err = bindFirst(r.pub, "gateway", []string{bind}); err != nil {
		return 0, err
	}
	return n, nil
}

// gatewayHWM is the gateway's queue per client when its key is not set:
// [DefaultGatewayHWM], fedmsg's, or fewer when that many messages of
// max_message_size would be past [DefaultFanoutBytes].
func gatewayHWM(so sockOpts) int {
	if so.MaxMsgSize <= 0 {
		return DefaultGatewayHWM
	}
	return int(min(DefaultGatewayHWM, max(DefaultFanoutBytes/so.MaxMsgSize, 1)))
}

// Endpoint returns the address the gateway's PUB socket is bound at, as
// ZeroMQ reports it.
func (g *Gateway) Endpoint() string { return g.r.outbound }

// Sources is the number of bus endpoints the gateway subscribes to.
func (g *Gateway) Sources() int { return g.sources }

// Run forwards messages until ctx ends, returning ctx.Err(), or until the
// gateway is closed, returning [ErrClosed]. See [Relay.Run].
func (g *Gateway) Run(ctx context.Context) error { return g.r.Run(ctx) }

// Stats returns the gateway's counters so far.
func (g *Gateway) Stats() RelayStats { return g.r.Stats() }

// Close stops Run and closes the sockets, giving unsent messages up to
// zmq_linger to leave. It is safe to call twice.
func (g *Gateway) Close() error { return g.r.Close() }
