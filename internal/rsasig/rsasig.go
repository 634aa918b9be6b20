// Package rsasig signs and verifies as the fedmsg x509 backend does: RSA,
// PKCS#1 v1.5, over SHA-1. It goes through OpenSSL's libcrypto where the
// build has cgo (about three times crypto/rsa's signing speed, the speed
// Python fedmsg signs at) and through crypto/rsa under the gilmsg_purego
// build tag or without cgo. Both give the same bytes: PKCS#1 v1.5 is
// deterministic.
package rsasig

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"fmt"
)

// ErrVerification is returned for a signature that does not match.
var ErrVerification = errors.New("gilmsg: RSA signature does not match")

// PrivateKey is an RSA private key made ready once: libcrypto's copy of it
// is built when the key is made and freed when it is garbage. It is safe for
// use by many goroutines.
type PrivateKey struct {
	goKey *rsa.PrivateKey
	lib   *libKey // nil: crypto/rsa signs
	pub   *PublicKey
}

// PublicKey is an RSA public key made ready once, like [PrivateKey].
type PublicKey struct {
	goKey *rsa.PublicKey
	lib   *libKey // nil: crypto/rsa verifies
}

// NewPrivateKey prepares k (which it precomputes) for signing. libcrypto
// signs with it only after signing a probe to the same bytes as crypto/rsa:
// a libcrypto that refuses SHA-1 (a system crypto policy) or a key it reads
// differently leaves the key to crypto/rsa.
func NewPrivateKey(k *rsa.PrivateKey) *PrivateKey {
	k.Precompute()
	p := &PrivateKey{goKey: k, pub: NewPublicKey(&k.PublicKey)}
	if !libAcceptsKey(&k.PublicKey) {
		return p
	}
	lib := newLibPrivateKey(k)
	if lib == nil {
		return p
	}
	probe := []byte("gilmsg rsasig probe")
	want, err := signGo(k, probe)
	if err != nil {
		return p
	}
	if got, err := lib.sign(probe); err == nil && string(got) == string(want) {
		p.lib = lib
	}
	return p
}

// NewPublicKey prepares k for verifying.
func NewPublicKey(k *rsa.PublicKey) *PublicKey {
	p := &PublicKey{goKey: k}
	if libAcceptsKey(k) {
		p.lib = newLibPublicKey(k)
	}
	return p
}

// libAcceptsKey keeps the keys crypto/rsa refuses, or might judge other
// than libcrypto, on crypto/rsa: it gives the verdict on them as it did
// before libcrypto was used (for instance, keys under 1024 bits refused).
func libAcceptsKey(k *rsa.PublicKey) bool {
	n := k.N.BitLen()
	return k.N.Bit(0) == 1 && n >= 1024 && n <= 16384 && k.E >= 3 && k.E&1 == 1
}

// Public is the key's public half, prepared for verifying.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// Key is the crypto/rsa key k was made from.
func (k *PublicKey) Key() *rsa.PublicKey { return k.goKey }

// SignSHA1 signs the SHA-1 of text.
func (k *PrivateKey) SignSHA1(text []byte) ([]byte, error) {
	if k.lib != nil {
		return k.lib.sign(text)
	}
	return signGo(k.goKey, text)
}

// SignSHA1Each signs the SHA-1 of each of texts, as SignSHA1 does each,
// in one call into libcrypto.
func (k *PrivateKey) SignSHA1Each(texts [][]byte) ([][]byte, error) {
	if k.lib != nil {
		return k.lib.signEach(texts)
	}
	sigs := make([][]byte, len(texts))
	for i, t := range texts {
		sig, err := signGo(k.goKey, t)
		if err != nil {
			return nil, err
		}
		sigs[i] = sig
	}
	return sigs, nil
}

// VerifySHA1 checks sig against the SHA-1 of text; a mismatch is
// [ErrVerification].
func (k *PublicKey) VerifySHA1(text, sig []byte) error {
	if k.lib != nil {
		// crypto/rsa takes only signatures exactly as long as the
		// modulus; so must libcrypto, whatever its version does.
		if len(sig) != k.goKey.Size() {
			return ErrVerification
		}
		return k.lib.verify(text, sig)
	}
	return verifyGo(k.goKey, text, sig)
}

// Backend names what signs and verifies: "OpenSSL 3.0.19 ..." or
// "crypto/rsa".
func Backend() string {
	if v := libVersion(); v != "" {
		return v
	}
	return "crypto/rsa"
}

func signGo(k *rsa.PrivateKey, text []byte) ([]byte, error) {
	sum := sha1.Sum(text)
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA1, sum[:])
	if err != nil {
		return nil, fmt.Errorf("RSA signing: %w", err)
	}
	return sig, nil
}

func verifyGo(k *rsa.PublicKey, text, sig []byte) error {
	sum := sha1.Sum(text)
	if err := rsa.VerifyPKCS1v15(k, crypto.SHA1, sum[:], sig); err != nil {
		if errors.Is(err, rsa.ErrVerification) {
			return ErrVerification
		}
		return fmt.Errorf("%w: %v", ErrVerification, err)
	}
	return nil
}
