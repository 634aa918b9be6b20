//go:build !cgo || gilmsg_purego

package rsasig

import (
	"crypto/rsa"
	"errors"
)

var errNoLib = errors.New("gilmsg: libcrypto is not in this build")

// libKey is never made in a pure-Go build: crypto/rsa signs and verifies.
type libKey struct{}

func newLibPrivateKey(*rsa.PrivateKey) *libKey { return nil }
func newLibPublicKey(*rsa.PublicKey) *libKey   { return nil }
func libVersion() string                       { return "" }

func (*libKey) sign([]byte) ([]byte, error) { return nil, errNoLib }
func (*libKey) verify(_, _ []byte) error    { return errNoLib }

func (*libKey) signEach([][]byte) ([][]byte, error) { return nil, errNoLib }
