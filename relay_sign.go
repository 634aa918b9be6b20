package gilmsg

import (
	"fmt"
	"log/slog"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"

	zmq "github.com/pebbe/zmq4"
)

// WithRelaySigner makes the relay sign each unsigned message it forwards
// with s, so that publishers that cannot sign still reach subscribers that
// validate (fedmsg-signing-relay; announce.NewSigningRelay loads s from
// certnames["signing_relay"]). A message that already carries a signature
// or certificate is forwarded byte for byte: Python's signing relay signs
// over the existing signature and so breaks it. So is anything that is not
// a two-frame fedmsg message (counted in [RelayStats.NotTwoFrames], and
// logged): it has nothing to sign, and subscribers judge it as they would
// from a plain relay. Each signed message is counted in
// [RelayStats.Signed]. Default: nothing is signed.
func WithRelaySigner(s *Signer) RelayOption { return func(o *relayOptions) { o.signer = s } }

// signOne is forwardOne for a signing relay: the message is read whole,
// since its body may change.
func (r *Relay) signOne() (bool, error) {
	frames, err := r.sub.RecvMessageBytes(zmq.DONTWAIT)
	if err != nil {
		if isEAGAIN(err) {
			return false, nil
		}
		return false, fmt.Errorf("relay receive: %w", err)
	}
	if len(frames) == 2 {
		if r.hooks != nil {
			r.hooks.messageIn(string(frames[0]))
		}
		if body, err := r.signBody(frames[1]); err != nil {
			r.log.Warn("gilmsg: signing relay forwards a message it cannot sign", untrusted.Attr("topic", string(frames[0])), slog.Any("error", err))
		} else if body != nil {
			frames[1] = body
			r.signed.Add(1)
		}
	} else {
		r.notTwoFrames.Add(1)
		r.log.Debug("gilmsg: relay forwarded a message that is not two frames", slog.Int("frames", len(frames)))
	}
	if err := r.send(frames); err != nil {
		return false, fmt.Errorf("relay send: %w", err)
	}
	r.forwarded.Add(1)
	if r.hooks != nil && len(frames) == 2 {
		r.hooks.messageOut(string(frames[0]))
	}
	return true, nil
}

// signBody returns body signed, or nil when it is signed already.
func (r *Relay) signBody(body []byte) ([]byte, error) {
	env, err := ParseEnvelope(body)
	if err != nil {
		return nil, err
	}
	if hasField(env, fieldSignature) || hasField(env, fieldCertificate) {
		return nil, nil
	}
	// ParseEnvelope made these fields for this message alone.
	fields := env.Fields()
	if err := r.signer.Sign(fields); err != nil {
		return nil, err
	}
	return MarshalCanonical(fields)
}
