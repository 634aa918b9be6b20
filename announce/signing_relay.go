package announce

import (
	"fmt"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// SigningRelayName is the certnames key a signing relay signs with.
const SigningRelayName = "signing_relay"

// NewSigningRelay is [gilmsg.NewRelay] for fedmsg-signing-relay: a relay
// that signs each unsigned message it forwards with
// certnames["signing_relay"] ([gilmsg.WithRelaySigner] says which messages
// it leaves as they are, and why).
//
// The signing key is loaded here, so a missing certname or key fails now.
func NewSigningRelay(cfg *gilmsg.Config, opts ...gilmsg.RelayOption) (*gilmsg.Relay, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: NewSigningRelay needs a config", gilmsg.ErrConfig)
	}
	certname, ok := cfg.Certnames[SigningRelayName]
	if !ok {
		return nil, &gilmsg.ConfigError{Key: "certnames", Err: fmt.Errorf("%w: no entry %q", gilmsg.ErrCannotSign, SigningRelayName)}
	}
	signer, err := gilmsg.LoadSigner(cfg.SSLDir, certname)
	if err != nil {
		return nil, err
	}
	return gilmsg.NewRelay(cfg, append(opts[:len(opts):len(opts)], gilmsg.WithRelaySigner(signer))...)
}
