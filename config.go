package gilmsg

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config mirrors fedmsg 1.1.7's configuration keys, with the same names (see
// the mapstructure tags) and the same defaults ([DefaultConfig]). A JSON file
// printed by Python's fedmsg-config loads into it as is (see [LoadConfig]).
//
// Durations are kept in the units fedmsg uses (seconds as float64,
// milliseconds as int) so that a file written for Python means the same here;
// the helper methods convert them to [time.Duration].
type Config struct {
	// TopicPrefix is the first part of every full topic. Default "com.example".
	TopicPrefix string `mapstructure:"topic_prefix" json:"topic_prefix"`
	// Environment is the second part of every full topic. Default "dev".
	Environment string `mapstructure:"environment" json:"environment"`
	// Name is this process's service name, a key of Endpoints. Default none.
	Name string `mapstructure:"name" json:"name,omitempty"`
	// Endpoints maps a service name to the addresses it may publish on.
	// Default {"relay_outbound": ["tcp://127.0.0.1:4001"]}.
	Endpoints map[string][]string `mapstructure:"endpoints" json:"endpoints"`
	// Active makes the publisher connect to RelayInbound instead of binding.
	// Default false.
	Active bool `mapstructure:"active" json:"active"`
	// RelayInbound is where active publishers connect and the relay binds.
	// fedmsg's value is a string; a list is accepted too. Default
	// "tcp://127.0.0.1:2001" (a list of that one address here; printed as
	// fedmsg's string by [Config.AsMap]).
	RelayInbound []string `mapstructure:"relay_inbound" json:"relay_inbound"`

	// SignMessages signs every published message. Default false.
	SignMessages bool `mapstructure:"sign_messages" json:"sign_messages"`
	// ValidateSignatures drops received messages that do not validate.
	// Default true.
	ValidateSignatures bool `mapstructure:"validate_signatures" json:"validate_signatures"`
	// CryptoBackend is the backend used to sign. Default "x509".
	CryptoBackend string `mapstructure:"crypto_backend" json:"crypto_backend"`
	// CryptoValidateBackends are the backends accepted when validating.
	// Default ["x509"].
	CryptoValidateBackends []string `mapstructure:"crypto_validate_backends" json:"crypto_validate_backends"`
	// SSLDir holds <certname>.crt and <certname>.key. Default "/etc/pki/fedmsg".
	SSLDir string `mapstructure:"ssldir" json:"ssldir"`
	// Certnames maps "<cert_prefix>.<short hostname>" or a service name to a
	// certname. Default {}.
	Certnames map[string]string `mapstructure:"certnames" json:"certnames"`
	// CertPrefix, when set, selects certnames["<cert_prefix>.<hostname>"].
	// Default unset.
	CertPrefix string `mapstructure:"cert_prefix" json:"cert_prefix,omitempty"`
	// CACertLocation is the CA certificate: a path or an https:// URL.
	// Default "/etc/pki/fedmsg/ca.crt".
	CACertLocation string `mapstructure:"ca_cert_location" json:"ca_cert_location"`
	// CACertCache and CACertCacheExpiry are kept for compatibility (Python
	// caches a downloaded CA on disk). Defaults null and 0.
	CACertCache       string  `mapstructure:"ca_cert_cache" json:"ca_cert_cache"`
	CACertCacheExpiry float64 `mapstructure:"ca_cert_cache_expiry" json:"ca_cert_cache_expiry"`
	// CRLLocation is the CRL: a path or an https:// URL; empty disables the
	// revocation check. Default null.
	CRLLocation string `mapstructure:"crl_location" json:"crl_location"`
	// CRLCache and CRLCacheExpiry (seconds) are kept for compatibility:
	// this package re-reads a CRL file when it changes (looked at about
	// once a second) and a CRL URL after a validation failure. Defaults
	// null and 3600.
	CRLCache       string  `mapstructure:"crl_cache" json:"crl_cache"`
	CRLCacheExpiry float64 `mapstructure:"crl_cache_expiry" json:"crl_cache_expiry"`
	// GPGHome is the GnuPG home of the gpg backend (signing keys, and the
	// public keys validation trusts), or one armored or binary key file.
	// Default unset: validation then reads ~/.gnupg, as Python does.
	GPGHome string `mapstructure:"gpg_home" json:"gpg_home,omitempty"`
	// GPGSigningKey is the fingerprint or key id gpg signs with. Default
	// unset: GPGKeys[<short hostname>].
	GPGSigningKey string `mapstructure:"gpg_signing_key" json:"gpg_signing_key,omitempty"`
	// GPGKeys maps a name to a key fingerprint (or a key id of 16 hex digits
	// or more: a shorter one could never match, so it is refused). It picks the
	// signing key by host name, as in fedmsg, and names validated gpg
	// signers, so routing_policy and ACK recipients use these names; a key
	// it does not name is known by its fingerprint. Default {}.
	GPGKeys map[string]string `mapstructure:"gpg_keys" json:"gpg_keys,omitempty"`
	// RoutingPolicy maps a full topic to the certificate CNs allowed to
	// publish on it. Default {}.
	RoutingPolicy map[string][]string `mapstructure:"routing_policy" json:"routing_policy"`
	// RoutingNitpicky rejects topics missing from RoutingPolicy. Default false.
	RoutingNitpicky bool `mapstructure:"routing_nitpicky" json:"routing_nitpicky"`

	// IOThreads is the ZeroMQ context's I/O thread count, 1 to 256.
	// Default 1.
	IOThreads int `mapstructure:"io_threads" json:"io_threads"`
	// PostInitSleep (seconds) is what fedmsg.init sleeps after binding;
	// [New] does not sleep it, the first publishes wait instead (see
	// [WithoutPostInitWait]). It also bounds how long a new subscription
	// waits for its connections. 0: no wait. Default 0.5.
	PostInitSleep float64 `mapstructure:"post_init_sleep" json:"post_init_sleep"`
	// HighWaterMark is ZMQ_SNDHWM/ZMQ_RCVHWM; 0 means no limit. Default 0.
	HighWaterMark int `mapstructure:"high_water_mark" json:"high_water_mark"`
	// MaxMessageSize (bytes) is the largest message any socket that reads
	// from peers accepts (not a fedmsg key: Python has no limit); a peer
	// that sends more is disconnected. 0, unset: [DefaultMaxMessageSize];
	// -1: no limit. See [Config.MaxMessageBytes].
	MaxMessageSize int64 `mapstructure:"max_message_size" json:"max_message_size,omitempty"`
	// ZMQEnabled and ZMQStrict are kept for compatibility. Defaults true,
	// false.
	ZMQEnabled bool `mapstructure:"zmq_enabled" json:"zmq_enabled"`
	ZMQStrict  bool `mapstructure:"zmq_strict" json:"zmq_strict"`
	// ZMQLinger (ms) bounds how long Close waits for unsent messages.
	// Default 1000; -1 (infinite) gets the default. Sockets that send get at
	// least 100: libzmq 4.3 can abort the process when a socket with a
	// linger of 0 closes while its peer does.
	ZMQLinger int `mapstructure:"zmq_linger" json:"zmq_linger"`
	// TCP keepalive settings. Defaults 1, 3, 60, 5. -1 leaves one to the
	// system; 0 for the count or a time is refused unless
	// zmq_tcp_keepalive is -1 (libzmq would drop every connection).
	ZMQTCPKeepalive      int `mapstructure:"zmq_tcp_keepalive" json:"zmq_tcp_keepalive"`
	ZMQTCPKeepaliveCnt   int `mapstructure:"zmq_tcp_keepalive_cnt" json:"zmq_tcp_keepalive_cnt"`
	ZMQTCPKeepaliveIdle  int `mapstructure:"zmq_tcp_keepalive_idle" json:"zmq_tcp_keepalive_idle"`
	ZMQTCPKeepaliveIntvl int `mapstructure:"zmq_tcp_keepalive_intvl" json:"zmq_tcp_keepalive_intvl"`
	// Reconnect interval and its maximum (ms). Defaults 100, 1000.
	ZMQReconnectIvl    int `mapstructure:"zmq_reconnect_ivl" json:"zmq_reconnect_ivl"`
	ZMQReconnectIvlMax int `mapstructure:"zmq_reconnect_ivl_max" json:"zmq_reconnect_ivl_max"`
	// ZMTP heartbeats (ms; not fedmsg keys): every ZMQHeartbeatIvl each
	// connection sends a PING, and one that hears nothing for
	// ZMQHeartbeatTimeout is closed, and made again by the side that
	// connected. A link that stays open but carries nothing (a stuck
	// proxy or NAT, a host gone without a FIN) is so reconnected within
	// ZMQHeartbeatIvl + ZMQHeartbeatTimeout + zmq_reconnect_ivl_max, 9 s
	// by default, where TCP keepalive takes minutes. ZMQHeartbeatTTL asks
	// the peer to close the connection if it hears nothing from us for
	// that long (libzmq answers PINGs by itself, so Python peers need
	// nothing). Defaults 2000, 6000, 6000; ZMQHeartbeatIvl 0 turns them
	// off.
	ZMQHeartbeatIvl     int `mapstructure:"zmq_heartbeat_ivl" json:"zmq_heartbeat_ivl"`
	ZMQHeartbeatTimeout int `mapstructure:"zmq_heartbeat_timeout" json:"zmq_heartbeat_timeout"`
	ZMQHeartbeatTTL     int `mapstructure:"zmq_heartbeat_ttl" json:"zmq_heartbeat_ttl"`
	// ZMQSendWait (ms; not a fedmsg key) is how long a publishing socket
	// waits for a subscriber whose queue is full when high_water_mark is
	// 0 (the queue is then 1 GiB / max_message_size messages, a cap of
	// ours): a burst to a slow but live subscriber waits for it rather
	// than be dropped. When the wait runs out, that message is sent past
	// the full subscribers, which lose it and get nothing more until they
	// have read half their queue, and sends wait again from the next one:
	// a subscriber that stopped reading costs one wait, not one per
	// message. ACKs never wait: they go past full subscribers at once.
	// 0: never wait; at most 60000. Default 2000.
	ZMQSendWait int `mapstructure:"zmq_send_wait" json:"zmq_send_wait"`
	// Timeout (seconds) is fedmsg's generic timeout. Default 2.
	Timeout float64 `mapstructure:"timeout" json:"timeout"`
	// PersistentStore is where published messages are kept for replay:
	// fedmsg's SqlStore URL, "sqlite:///ABS/PATH" or "postgresql://...".
	// [New] opens it for a bus that publishes, with the store package
	// registered for its scheme ([RegisterStore]): a program imports
	// _ "github.com/gilmsg/gilmsg-go/sqlstore", else New fails naming
	// that import. [WithStore] overrides it. Default null: no store.
	PersistentStore any `mapstructure:"persistent_store" json:"persistent_store"`
	// ReplayEndpoints maps a publisher's name to the address of its replay
	// server (one ZeroMQ REP socket). Subscriptions recover the gaps of the
	// names listed here. Default {}.
	ReplayEndpoints map[string]string `mapstructure:"replay_endpoints" json:"replay_endpoints,omitempty"`
	// StatusDirectory, when set, holds one file per consumer with the last
	// seq_id seen from each publisher, for catch-up after a restart: a
	// subscription given [WithCheckpoint](name) keeps <status_directory>/<name>.
	// Default unset.
	StatusDirectory string `mapstructure:"status_directory" json:"status_directory,omitempty"`
	// ReplayGapMaxAge (seconds) is how long subscriptions keep asking for
	// seq_ids they missed before giving them up; see [WithGapMaxAge].
	// Default 3600.
	ReplayGapMaxAge float64 `mapstructure:"replay_gap_max_age" json:"replay_gap_max_age,omitempty"`
	// SkipLastMessage and Mute are kept for compatibility.
	SkipLastMessage bool `mapstructure:"skip_last_message" json:"skip_last_message"`
	Mute            bool `mapstructure:"mute" json:"mute,omitempty"`

	// Modname is the default modname of published topics (not a fedmsg key:
	// Python guesses it from the calling module). Default: the executable's
	// name.
	Modname string `mapstructure:"modname" json:"modname,omitempty"`

	// AckTimeout (seconds) is the default wait for ACKs of a reliable
	// publish (not a fedmsg key). Default 0, unset: see
	// [Config.AckTimeoutDuration]. Set, it is used as is, Python gilmsg's
	// 0.25 included; a file that sets it to 0 is refused, as 0 would fail
	// every reliable publish.
	AckTimeout float64 `mapstructure:"ack_timeout" json:"ack_timeout,omitempty"`

	// Extra keeps every key this struct does not know (irc, stomp_*,
	// logging, ...), as loaded.
	Extra map[string]any `mapstructure:",remain" json:"-"`
	// keyFiles says where each Extra key came from (a file, or FEDMSG_*),
	// for New's warning about unknown keys.
	keyFiles map[string]string
}

// DefaultConfig returns fedmsg 1.1.7's defaults.
func DefaultConfig() *Config {
	return &Config{
		TopicPrefix:            "com.example",
		Environment:            "dev",
		Endpoints:              map[string][]string{"relay_outbound": {"tcp://127.0.0.1:4001"}},
		RelayInbound:           []string{"tcp://127.0.0.1:2001"},
		ValidateSignatures:     true,
		CryptoBackend:          "x509",
		CryptoValidateBackends: []string{"x509"},
		SSLDir:                 "/etc/pki/fedmsg",
		Certnames:              map[string]string{},
		CACertLocation:         "/etc/pki/fedmsg/ca.crt",
		CRLCacheExpiry:         3600,
		RoutingPolicy:          map[string][]string{},
		IOThreads:              1,
		PostInitSleep:          0.5,
		ZMQEnabled:             true,
		ZMQLinger:              1000,
		ZMQTCPKeepalive:        1,
		ZMQTCPKeepaliveCnt:     3,
		ZMQTCPKeepaliveIdle:    60,
		ZMQTCPKeepaliveIntvl:   5,
		ZMQReconnectIvl:        100,
		ZMQReconnectIvlMax:     1000,
		ZMQHeartbeatIvl:        2000,
		ZMQHeartbeatTimeout:    6000,
		ZMQHeartbeatTTL:        6000,
		ZMQSendWait:            2000,
		Timeout:                2,
	}
}

// fedmsgOtherKeys are the top-level keys that fedmsg 1.1.7 and its parts
// (hub, relay, gateway, IRC bot, STOMP, replay, commands) read and Config
// does not: they load silently into Extra. Keys starting with one of
// fedmsgKeyPrefixes are fedmsg's too.
var fedmsgOtherKeys = []string{
	"topic_prefix_re", "print_config", "config_filename", "logging",
	"srv_endpoints", "replay_endpoints", "persistent_store", "datagrepper_url",
	"irc", "status_directory", "explicit_hub_consumers", "test_consumer_enabled",
	"collectd_interval", "max_queue_size", "zmq_subscribe_method",
	"zmq_publish_endpoints", "zmq_subscribe_endpoints", "certname",
}

var fedmsgKeyPrefixes = []string{"irc_", "stomp_", "fedmsg.", "moksha.", "datanommer."}

var errUnknownKey = errors.New("not a key of fedmsg or gilmsg, ignored (kept in Extra)")

func isFedmsgKey(key string) bool {
	if slices.Contains(fedmsgOtherKeys, key) {
		return true
	}
	for _, p := range fedmsgKeyPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// UnknownKeys returns, sorted, the keys of Extra that neither Config nor
// fedmsg knows: usually typos ("ack_timout"), which would otherwise be
// ignored without a word. fedmsg's own keys for its other parts (irc,
// stomp_*, logging, fedmsg.consumers.*, ...) are not listed. [New] logs a
// warning for each; [ConfigLoader.Warn] also names the file.
func (c *Config) UnknownKeys() []string {
	var out []string
	for key := range c.Extra {
		if !isFedmsgKey(key) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// limit is the range of a numeric key. Seconds keys are float64 fields,
// the others int fields.
type limit struct {
	min, max float64
	minOpen  bool   // min itself is refused (ack_timeout 0)
	why      string // said with a value out of range
}

// maxSeconds bounds every duration key: about 31 years, well inside what a
// time.Duration holds (292 years; 9.3e9 s overflowed to a negative one).
const maxSeconds = 1e9

// numericLimits are the ranges of the numeric keys: what ZeroMQ accepts
// (a huge io_threads aborts inside libzmq rather than fail), and what
// means something for the durations.
var numericLimits = map[string]limit{
	"io_threads":              {min: 1, max: 256, why: "ZeroMQ threads; libzmq aborts the process past what the system allows"},
	"high_water_mark":         {min: 0, max: math.MaxInt32},
	"max_message_size":        {min: -1, max: math.MaxInt64, why: "-1: no limit, 0: the default"},
	"zmq_linger":              {min: -1, max: math.MaxInt32, why: "-1: wait forever"},
	"zmq_tcp_keepalive":       {min: -1, max: 1, why: "-1: the OS default, 0: off, 1: on"},
	"zmq_tcp_keepalive_cnt":   {min: -1, max: math.MaxInt32},
	"zmq_tcp_keepalive_idle":  {min: -1, max: math.MaxInt32},
	"zmq_tcp_keepalive_intvl": {min: -1, max: math.MaxInt32},
	"zmq_reconnect_ivl":       {min: -1, max: math.MaxInt32, why: "-1: never reconnect"},
	"zmq_reconnect_ivl_max":   {min: 0, max: math.MaxInt32},
	"zmq_heartbeat_ivl":       {min: 0, max: math.MaxInt32, why: "0: no heartbeats"},
	"zmq_heartbeat_timeout":   {min: 0, max: math.MaxInt32, why: "0: the interval"},
	"zmq_heartbeat_ttl":       {min: 0, max: 6553599, why: "libzmq's maximum"},
	"zmq_send_wait":           {min: 0, max: 60000, why: "0: never wait; at most a minute, which every publish may wait behind a subscriber that stopped reading"},
	"ack_timeout":             {min: 0, minOpen: true, max: maxSeconds, why: "0 would fail every reliable publish"},
	"timeout":                 {min: 0, max: maxSeconds},
	"post_init_sleep":         {min: 0, max: maxSeconds},
	"ca_cert_cache_expiry":    {min: 0, max: maxSeconds},
	"crl_cache_expiry":        {min: 0, max: maxSeconds},
}

// checkLimit checks a decoded field against its key's range, if it has
// one. Written so that NaN fails too.
func checkLimit(key string, field reflect.Value) error {
	l, ok := numericLimits[key]
	if !ok {
		return nil
	}
	var x float64
	switch field.Kind() {
	case reflect.Int, reflect.Int64:
		x = float64(field.Int())
	case reflect.Float64:
		x = field.Float()
	default:
		return nil
	}
	inside := x <= l.max && (x > l.min || (!l.minOpen && x == l.min))
	if inside {
		return nil
	}
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	var err error
	if l.minOpen {
		err = fmt.Errorf("must be more than %s and at most %s, got %s", num(l.min), num(l.max), num(x))
	} else {
		err = fmt.Errorf("must be from %s to %s, got %s", num(l.min), num(l.max), num(x))
	}
	if l.why != "" {
		err = fmt.Errorf("%w (%s)", err, l.why)
	}
	return err
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// AckTimeoutDuration is AckTimeout as a [time.Duration] when it is set.
// Unset (0), it is the larger of timeout and twice zmq_reconnect_ivl_max:
// 2 s with fedmsg's defaults. Python gilmsg's 0.25 s gives false negatives
// on a healthy bus, because a recipient's socket that is reconnecting
// retries only every zmq_reconnect_ivl_max (1 s), and a loaded machine
// can hold an ACK longer than that; success never waits for the timeout,
// only failure does.
func (c *Config) AckTimeoutDuration() time.Duration {
	if c.AckTimeout > 0 {
		return seconds(c.AckTimeout)
	}
	return max(seconds(c.Timeout), 2*time.Duration(c.ZMQReconnectIvlMax)*time.Millisecond, minDefaultAckTimeout)
}

// DefaultMaxMessageSize is the largest message a subscriber accepts unless
// [WithMaxMessageSize] says otherwise: ZeroMQ drops the connection of a
// peer that sends more (and the subscription makes it again). fedmsg
// messages are JSON records of a few kB, rarely past a few hundred; 8 MiB
// leaves room for the largest while bounding what one message costs: its
// reading allocates from about 2 (long text) to at most about 70 (nothing
// but tiny values) times its size, and that memory goes back to the OS
// about a second after the last big message (RELIABILITY.md).
const DefaultMaxMessageSize = 8 << 20

// MaxMessageBytes is MaxMessageSize with its default applied: the limit
// in bytes, or -1 for none.
func (c *Config) MaxMessageBytes() int64 {
	switch {
	case c.MaxMessageSize == 0:
		return DefaultMaxMessageSize
	case c.MaxMessageSize < 0:
		return -1
	}
	return c.MaxMessageSize
}

// minDefaultAckTimeout is the least ACK timeout used when ack_timeout is
// unset, whatever timeout and zmq_reconnect_ivl_max say.
const minDefaultAckTimeout = time.Second

// TimeoutDuration is Timeout as a [time.Duration].
func (c *Config) TimeoutDuration() time.Duration { return seconds(c.Timeout) }

// Clone copies c deeply enough that the copy's maps and slices can change
// without touching c's: how a program derives the config of a second bus
// (announce.Config does) without changing the first one's.
func (c *Config) Clone() *Config {
	d := *c
	d.Endpoints = make(map[string][]string, len(c.Endpoints))
	for k, v := range c.Endpoints {
		d.Endpoints[k] = slices.Clone(v)
	}
	d.RoutingPolicy = make(map[string][]string, len(c.RoutingPolicy))
	for k, v := range c.RoutingPolicy {
		d.RoutingPolicy[k] = slices.Clone(v)
	}
	d.RelayInbound = slices.Clone(c.RelayInbound)
	d.CryptoValidateBackends = slices.Clone(c.CryptoValidateBackends)
	d.Certnames = maps.Clone(c.Certnames)
	d.GPGKeys = maps.Clone(c.GPGKeys)
	d.ReplayEndpoints = maps.Clone(c.ReplayEndpoints)
	d.Extra = maps.Clone(c.Extra)
	d.keyFiles = maps.Clone(c.keyFiles)
	return &d
}

// normalizeKeySpec turns a gpg_keys or gpg_signing_key value ("0x…",
// spaced, lower-case, a 16-digit key id or a fingerprint) into upper-case
// hex.
func normalizeKeySpec(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "!")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	return strings.ToUpper(strings.ReplaceAll(s, " ", ""))
}

// checkKeySpec refuses a key spec that names no key for sure: anything but
// hex, or fewer than 16 digits (a short key id, which gpg would resolve but
// [keyMatches] never matches, so the signer would lose its name).
func checkKeySpec(spec string) error {
	want := normalizeKeySpec(spec)
	if _, err := hex.DecodeString(want); err != nil || len(want) < 16 {
		return fmt.Errorf("%q is not a key id of 16 hex digits or a fingerprint", spec)
	}
	return nil
}
