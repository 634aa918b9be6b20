package gilmsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Bus is one process's place on a fedmsg bus (fedmsg calls it a context):
// its own ZeroMQ context, its PUB socket when it has a name to publish from
// (or is active), a validator, a signer, and, once a reliable publish needs
// it, the ACK listener.
//
// All methods are safe for use by many goroutines, except that one
// [Subscription] must be read from one goroutine at a time.
type Bus struct {
	cfg       *Config
	opts      options
	log       *slog.Logger
	zctx      *zmq.Context
	validator *Validator
	hostname  string
	username  string
	modname   string
	ackTopic  string

	pub    *publisher   // nil when the bus has no name and is not active
	storeW *storeWriter // nil without a store
	// ownStore is the store New opened from persistent_store, which Close
	// closes; a store given with WithStore is the caller's.
	ownStore Store

	signerOnce sync.Once
	signer     *Signer
	signerErr  error

	// The ACK listener, started by the first reliable publish and run on
	// the bus's own lifetime: acksStart is the start under way (nil when
	// none; a failed one is cleared, so the next publish tries again).
	acksMu     sync.Mutex
	acks       *ackListener
	acksStart  *ackStart
	acksClosed bool

	inflight chan struct{} // PublishAsync's cap
	asyncWG  sync.WaitGroup

	counter   atomic.Int64                  // the envelope's i
	topics    [16]atomic.Pointer[topicMemo] // fullTopic's recent answers, by hash
	ackRTT    atomic.Int64                  // recent ACK delays (ns), averaged, for the first resend
	ackDelays ackDelays                     // the same per recipient: when is one late
	stats     stats

	mu     sync.Mutex
	closed chan struct{}
	life   context.Context // cancelled by Close (with closed), for withClose
	end    context.CancelFunc
	subs   map[*Subscription]struct{}
	wg     sync.WaitGroup // the bus's own goroutines
}

// Option configures a [Bus].
type Option func(*options)

type options struct {
	logger       *slog.Logger
	modname      string
	readyTimeout time.Duration
	postInitWait bool
	maxMsgSize   int64
	resend       bool
	resendMin    time.Duration
	resendMax    time.Duration
	maxInFlight  int
	queueSize    int
	hooks        *Hooks
	store        Store
	storeTimeout time.Duration
	errs         []error // options given values they cannot take
	// ackHook, for tests, is called with each ACK's msg_id just before
	// it is signed, on the goroutine that signs it; an error it returns
	// is the ACK's.
	ackHook func(msgID string) error
}

func defaultOptions(cfg *Config) options {
	ready := seconds(cfg.PostInitSleep)
	if ready <= 0 {
		ready = 500 * time.Millisecond
	}
	return options{
		logger:       slog.New(defaultWarnings{}),
		readyTimeout: ready,
		postInitWait: true,
		maxMsgSize:   cfg.MaxMessageBytes(),
		resend:       true,
		resendMax:    8 * time.Second,
		maxInFlight:  1024,
		queueSize:    1024,
		storeTimeout: DefaultStoreTimeout,
	}
}

// WithLogger logs through l. Default: warnings and errors (an unknown
// config key, a failed send) go to [slog.Default], as the standard
// library's own do; nothing else is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithModname sets the modname part of full topics. Default: the config's
// modname key, else the executable's name.
func WithModname(m string) Option { return func(o *options) { o.modname = m } }

// WithReadyTimeout bounds how long a new subscription (and the ACK listener,
// at its start and whenever a new recipient adds endpoints to it) waits
// for its connections to complete their handshake before it is used.
// Default: post_init_sleep, the time Python fedmsg sleeps blindly, here an
// upper bound rarely reached.
func WithReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// WithoutPostInitWait turns off the wait for slow joiners, for a caller
// that waits its own way (or accepts the loss).
//
// ZeroMQ drops what a publisher sends before a subscriber has connected and
// subscribed, and a subscriber already running reconnects only every
// zmq_reconnect_ivl, backing off to zmq_reconnect_ivl_max. fedmsg.init
// sleeps post_init_sleep after binding so that such subscribers can come
// back. [New] does not sleep: by default the publishes made before
// post_init_sleep has passed since the bind wait for what is left of it,
// and every later publish pays nothing. The wait is never shorter than
// zmq_reconnect_ivl_max plus zmq_reconnect_ivl (1.1 s with fedmsg's
// defaults), the longest a retrying subscriber takes to come back.
// Measured with 50 messages published at once to a Python tail running for
// 3 s: 48 to 50 arrived from a Python publisher, 0 to 35 from a Go one
// waiting only post_init_sleep, 50 of 50 with this floor. A publish whose ctx
// deadline comes first waits nine tenths of the time left to it, then
// sends. The wait also ends for good once [Bus.WaitSubscribers] has
// succeeded, and post_init_sleep 0 means none, as in fedmsg. An ACK waits
// only until the publisher expecting it has subscribed.
func WithoutPostInitWait() Option { return func(o *options) { o.postInitWait = false } }

// WithMaxMessageSize sets ZMQ_MAXMSGSIZE on subscribing sockets; a peer
// sending a larger message is disconnected. Default: the config's
// max_message_size ([Config.MaxMessageBytes], [DefaultMaxMessageSize]
// unset); -1 means no limit. Other values below 1 make [New] fail with
// [ErrInvalidOption].
func WithMaxMessageSize(n int64) Option {
	return func(o *options) {
		if n < 1 && n != -1 {
			o.errs = append(o.errs, fmt.Errorf("%w: WithMaxMessageSize(%d): want a size in bytes, or -1 for no limit", ErrInvalidOption, n))
			return
		}
		o.maxMsgSize = n
	}
}

// WithResendDelays sets the slow fallback of resends: the first copy
// after first, then doubling up to most. A reliable publish may send its
// message again while ACKs are missing. Python gilmsg consumers process
// every copy they get, so a copy goes out only for a recipient that is
// late: one that has not ACKed within four times its recent ACK delay (an
// average per recipient), or 250 ms, whichever is longer, since the latest
// copy. Then only when a subscription matching the topic reaches the
// publishing socket after that copy (a recipient that had not subscribed
// yet, or has reconnected), or on the slow fallback. A recipient that has
// ACKed is never the reason for a copy, but a copy reaches every
// subscriber. Defaults: resends on; first 0 means zmq_reconnect_ivl_max
// (1 s), and at least ten recent ACK delays; a first under 250 ms also
// lowers that floor of lateness; most 0 means 8 s. [WithoutResend] turns
// resends off.
func WithResendDelays(first, most time.Duration) Option {
	return func(o *options) {
		o.resend = true
		if first > 0 {
			o.resendMin = first
		}
		if most > 0 {
			o.resendMax = most
		}
		o.resendMax = max(o.resendMax, o.resendMin)
	}
}

// WithoutResend sends a reliable message once, as Python gilmsg does: a
// copy lost on its way (a recipient still connecting, a reconnect) then
// makes the publish time out. See [WithResendDelays] for what resends do.
func WithoutResend() Option { return func(o *options) { o.resend = false } }

// WithMaxInFlight caps the reliable publishes [Bus.PublishAsync] keeps
// waiting at once. Default 1024; below 1, [New] fails with
// [ErrInvalidOption].
func WithMaxInFlight(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.errs = append(o.errs, fmt.Errorf("%w: WithMaxInFlight(%d): want at least 1", ErrInvalidOption, n))
			return
		}
		o.maxInFlight = n
	}
}

// New joins the bus described by cfg (nil: [DefaultConfig]), after
// checking it with [Config.Validate]. When cfg.Name has endpoints, it binds
// the first free one; when cfg.Active, it connects to relay_inbound instead.
// Without either the bus can subscribe but not publish.
func New(cfg *Config, opts ...Option) (*Bus, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.Clone()
	o := defaultOptions(cfg)
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.errs) > 0 {
		return nil, errors.Join(o.errs...)
	}
	b := &Bus{
		cfg:       cfg,
		opts:      o,
		log:       o.logger,
		validator: NewValidator(cfg),
		hostname:  shortHostname(),
		username:  currentUser(),
		modname:   o.modname,
		ackTopic:  cfg.TopicPrefix + "." + cfg.Environment + ".gilmsg.ack",
		inflight:  make(chan struct{}, max(o.maxInFlight, 1)),
		closed:    make(chan struct{}),
		subs:      make(map[*Subscription]struct{}),
	}
	b.life, b.end = context.WithCancel(context.Background())
	warnUnknownKeys(b.log, cfg)
	if b.modname == "" {
		b.modname = cfg.Modname
	}
	if b.modname == "" {
		b.modname = filepath.Base(os.Args[0])
	}
	var err error
	if b.zctx, err = newContext(cfg.IOThreads); err != nil {
		return nil, err
	}
	if cfg.Active || (cfg.Name != "" && len(cfg.Endpoints[cfg.Name]) > 0) {
		// A bus that will sign says now if it cannot, not at its first
		// message.
		if cfg.SignMessages {
			if _, err := b.getSigner(); err != nil {
				b.zctx.Term()
				return nil, err
			}
		}
		st := o.store
		if st == nil {
			if st, err = openConfiguredStore(cfg); err != nil {
				b.zctx.Term()
				return nil, err
			}
			b.ownStore = st
		}
		if b.pub, err = b.startPublisher(); err != nil {
			if b.ownStore != nil {
				b.ownStore.Close()
			}
			b.zctx.Term()
			return nil, err
		}
		if st != nil {
			b.storeW = newStoreWriter(st, o.storeTimeout, b.log, o.hooks)
		}
	} else if cfg.Name != "" {
		b.log.Warn("gilmsg: name has no endpoints; this bus cannot publish", "name", cfg.Name)
	}
	return b, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// Config returns the bus's own copy of the configuration it was made with.
// Treat it as read-only.
func (b *Bus) Config() *Config { return b.cfg }

// Endpoint returns the address the bus publishes from: the bound endpoint
// read back from ZeroMQ (so "tcp://127.0.0.1:*" yields the real port), or
// the relay address when active; "" when the bus cannot publish.
func (b *Bus) Endpoint() string {
	if b.pub == nil {
		return ""
	}
	return b.pub.endpoint
}

// Validator returns the bus's validator.
func (b *Bus) Validator() *Validator { return b.validator }

// getSigner loads the signing key once, on first need: at New when
// sign_messages is set, else when the bus first signs an ACK or a reliable
// publish.
func (b *Bus) getSigner() (*Signer, error) {
	b.signerOnce.Do(func() {
		if b.cfg.CryptoBackend == "gpg" {
			b.signer, b.signerErr = LoadGPGSigner(b.cfg, b.hostname)
			return
		}
		name := b.cfg.Name
		if b.cfg.Active && name == "" {
			name = "relay_inbound"
		}
		certname, err := certnameFor(b.cfg, name, b.hostname)
		if err != nil {
			b.signerErr = err
			return
		}
		s, err := LoadSigner(b.cfg.SSLDir, certname)
		if err == nil {
			err = s.checkUsable(b.validator)
		}
		if err != nil {
			s = nil
		}
		b.signer, b.signerErr = s, err
	})
	return b.signer, b.signerErr
}

// Close leaves the bus: blocked calls return [ErrClosed], queued messages
// get up to zmq_linger to leave, and every socket and goroutine the bus
// started is gone when it returns. Its subscriptions are closed at once,
// each sending the ACKs it has queued ([Subscription.Close]: at most
// 2 s), before its publisher closes. It is safe to call twice.
func (b *Bus) Close() error {
	b.mu.Lock()
	select {
	case <-b.closed:
		b.mu.Unlock()
		return nil
	default:
	}
	close(b.closed)
	b.end()
	// Nothing below may wait on a CA or CRL download.
	b.validator.close()
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	// At once: each may wait up to 2 s for its ACKs to leave, and the
	// publisher below closes only after all of them.
	var closing sync.WaitGroup
	for _, s := range subs {
		closing.Go(func() { s.Close() })
	}
	closing.Wait()
	// Once closed, no ACK listener may start; one that did is stopping.
	b.acksMu.Lock()
	b.acksClosed = true
	acks := b.acks
	b.acksMu.Unlock()
	if acks != nil {
		acks.close()
	}
	b.asyncWG.Wait()
	if b.storeW != nil {
		b.storeW.close()
	}
	if b.ownStore != nil {
		b.ownStore.Close()
	}
	if b.pub != nil {
		b.pub.close()
	}
	b.wg.Wait()
	return b.zctx.Term()
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

func (b *Bus) addSub(s *Subscription) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed() {
		return ErrClosed
	}
	b.subs[s] = struct{}{}
	return nil
}

func (b *Bus) removeSub(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// withClose returns ctx, cancelled also when the bus closes.
func (b *Bus) withClose(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.life, cancel)
	return ctx, func() { stop(); cancel() }
}

// ctxErr maps a context error to ErrClosed when the bus closed.
func (b *Bus) ctxErr(ctx context.Context) error {
	if b.isClosed() {
		return ErrClosed
	}
	return ctx.Err()
}

// subscribeEndpoints lists the endpoints a subscriber connects to: every
// address of every name but relay_inbound (WIRE.md §1).
func (b *Bus) subscribeEndpoints() []namedEndpoint {
	var out []namedEndpoint
	for _, name := range sortedKeys(b.cfg.Endpoints) {
		if name == "relay_inbound" {
			continue
		}
		addrs := b.cfg.Endpoints[name]
		if name == b.cfg.Name && b.pub != nil && !b.cfg.Active {
			// Our own name: where we really are, which a wildcard or a
			// list of candidates does not say.
			addrs = []string{strings.Replace(b.pub.endpoint, "//0.0.0.0:", "//127.0.0.1:", 1)}
		}
		for _, addr := range addrs {
			out = append(out, namedEndpoint{name: name, addr: addr})
		}
	}
	return out
}

type namedEndpoint struct{ name, addr string }

var errNoEndpoints = errors.New("no endpoints to subscribe to")

func (b *Bus) sockOpts() sockOpts {
	o := sockOptsFromConfig(b.cfg)
	o.MaxMsgSize = b.opts.maxMsgSize
	return o
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
