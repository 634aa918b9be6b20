package gilmsg

import "errors"

// Sentinel errors. Match them with [errors.Is]; the typed errors below carry
// the detail and unwrap to one of these.
var (
	// ErrClosed is returned by every call on a closed [Bus] and by calls
	// that were blocked when it closed.
	ErrClosed = errors.New("gilmsg: bus closed")

	// ErrInvalidJSON means a text is not JSON as Python's json module reads it.
	ErrInvalidJSON = errors.New("gilmsg: invalid JSON")

	// ErrInvalidMessage means a body is JSON but not a fedmsg envelope
	// (not an object, a field of the wrong type, ...).
	ErrInvalidMessage = errors.New("gilmsg: invalid message")

	// ErrInvalidSignature is the root of every validation failure; see
	// [ValidationError] for the reason. Failures that say nothing about
	// the message's own signature match a narrower sentinel too:
	// [ErrPolicyRefused] and [ErrTrust]. They still match
	// ErrInvalidSignature, which code written before them tests for
	// "drop this message"; test the narrower one to tell a refused signer
	// or a broken CA from a forged message.
	ErrInvalidSignature = errors.New("gilmsg: message failed validation")

	// ErrPolicyRefused means a validly signed message came from a signer
	// that routing_policy does not allow for its topic ([ReasonPolicy]).
	ErrPolicyRefused = errors.New("gilmsg: signer refused by routing_policy")

	// ErrConfig means the configuration is unusable; [ConfigError] names the key.
	ErrConfig = errors.New("gilmsg: bad configuration")

	// ErrNoEndpoint means no address of the bus's name could be bound.
	ErrNoEndpoint = errors.New("gilmsg: no available endpoint")

	// ErrNotConnected means an active publisher has no relay to send to.
	ErrNotConnected = errors.New("gilmsg: not connected")

	// ErrTrust means the CA certificate or the CRL cannot be used; see
	// [TrustError] for which, where and why. A message judged while they
	// cannot be used fails with [ReasonCA], matching ErrTrust as well as
	// [ErrInvalidSignature].
	ErrTrust = errors.New("gilmsg: CA or CRL unusable")

	// ErrCannotSign means signing was asked for but no key is usable.
	ErrCannotSign = errors.New("gilmsg: cannot sign")

	// ErrAckTimeout is matched by an [AckTimeoutError]: not every recipient
	// ACKed in time.
	ErrAckTimeout = errors.New("gilmsg: timed out waiting for ACKs")

	// ErrAlreadyInitialized is returned by [Init] when the default bus exists.
	ErrAlreadyInitialized = errors.New("gilmsg: already initialized")

	// ErrTooManyInFlight is returned by PublishAsync past its in-flight cap.
	ErrTooManyInFlight = errors.New("gilmsg: too many reliable publishes in flight")

	// ErrGap is matched by every [GapError]: messages a subscription
	// knows it missed and could not recover.
	ErrGap = errors.New("gilmsg: missed messages")

	// ErrInvalidOption means an option was given a value it cannot take
	// (a zero size, a path where a name belongs).
	ErrInvalidOption = errors.New("gilmsg: invalid option")

	// ErrReplayTimeout is a [ReplayError]'s cause when a replay server
	// did not answer in time.
	ErrReplayTimeout = errors.New("gilmsg: no answer from the replay server")

	// ErrReplayTooLarge is a [ReplayError]'s cause when a replay server's
	// answer had more frames or bytes than a subscription reads (1 000
	// frames, 64 MiB).
	ErrReplayTooLarge = errors.New("gilmsg: replay answer too large")

	// ErrMessageTooLarge means a msg to publish is larger, encoded with
	// its envelope (signature and certificate: ~3 kB), than
	// max_message_size: every Go subscriber would drop its connection
	// rather than read it, and the publisher's queue for each subscriber
	// is sized by that limit.
	ErrMessageTooLarge = errors.New("gilmsg: message too large")

	// ErrEndpoint is matched by every [EndpointError]: an address that
	// could not be connected to or bound when it was used.
	ErrEndpoint = errors.New("gilmsg: endpoint unusable")
)

// EndpointError says that a socket could not connect to, or bind, one
// address when it was used: the port is taken, the address is not one of
// this host's. That is no fault of the configuration, which
// may be right on another host or a minute later. An address ZeroMQ
// cannot parse is the config's fault: its EndpointError comes inside a
// [*ConfigError] on the key "endpoints". (libzmq cannot tell a host name
// that does not resolve from a malformed address: both are EINVAL, and a
// ConfigError.)
type EndpointError struct {
	Op       string // "connect" or "bind"
	Name     string // the endpoint's name in the config, "" if none
	Endpoint string // the address
	Err      error  // the cause, from libzmq
}

func (e *EndpointError) Error() string {
	where := e.Endpoint
	if e.Name != "" {
		where = e.Name + " " + e.Endpoint
	}
	return "gilmsg: " + e.Op + " " + where + ": " + e.Err.Error()
}

// Unwrap returns [ErrEndpoint] and the cause.
func (e *EndpointError) Unwrap() []error { return []error{ErrEndpoint, e.Err} }

// causeTexter is one of this package's typed errors, read inside another:
// the outer error says gilmsg: already, so the inner one gives its text
// without it, and the message has one prefix.
type causeTexter interface{ causeText() string }

// causeText is err's text as the cause of another of this package's
// typed errors.
func causeText(err error) string {
	if c, ok := err.(causeTexter); ok {
		return c.causeText()
	}
	return err.Error()
}
