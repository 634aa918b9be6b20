package gilmsg

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/rsasig"
)

// Reason classifies why a message failed validation; counters are kept per
// reason.
type Reason string

// Validation failure reasons.
const (
	ReasonMalformed   Reason = "malformed"     // not a fedmsg envelope
	ReasonUnsigned    Reason = "unsigned"      // no signature or certificate
	ReasonBackend     Reason = "backend"       // crypto backend not accepted
	ReasonCertificate Reason = "certificate"   // not a certificate, or untrusted
	ReasonExpired     Reason = "expired"       // past the end of its validity period
	ReasonNotYetValid Reason = "not-yet-valid" // before the start of its validity period
	ReasonRevoked     Reason = "revoked"       // on the CRL
	ReasonCA          Reason = "ca"            // CA or CRL could not be loaded
	ReasonSignature   Reason = "signature"     // signature does not verify
	ReasonPolicy      Reason = "policy"        // routing policy refuses the signer
	ReasonKeyring     Reason = "keyring"       // gpg_home could not be read
	ReasonUnknownKey  Reason = "unknown-key"   // gpg: the signing key is not in gpg_home
)

// ValidationError says why a message is invalid. It unwraps to
// [ErrInvalidSignature], to [ErrPolicyRefused] for [ReasonPolicy] and
// [ErrTrust] for [ReasonCA], and to the underlying cause, if any.
type ValidationError struct {
	Reason Reason
	Signer string // the certificate's CN (gpg: the key's name), when known
	Detail string
	Err    error
}

func (e *ValidationError) Error() string {
	s := "gilmsg: invalid message (" + string(e.Reason) + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + causeText(e.Err)
	}
	return s
}

func (e *ValidationError) Unwrap() []error {
	errs := []error{ErrInvalidSignature}
	switch e.Reason {
	case ReasonPolicy:
		errs = append(errs, ErrPolicyRefused)
	case ReasonCA:
		errs = append(errs, ErrTrust)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

func invalid(r Reason, detail string, err error) *ValidationError {
	return &ValidationError{Reason: r, Detail: detail, Err: err}
}

// ReasonOf returns the validation reason of err, or "" when err is not a
// validation failure. Malformed bodies count as [ReasonMalformed].
func ReasonOf(err error) Reason {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		return ve.Reason
	case errors.Is(err, ErrInvalidJSON), errors.Is(err, ErrInvalidMessage):
		return ReasonMalformed
	}
	return ""
}

// Validator judges signed messages as fedmsg's x509 backend does (WIRE.md
// §5), and caches per-certificate chain results so that, once a signer has
// been seen, validating its messages costs one RSA verification. Messages of
// the gpg backend (§12) go to gpg.go; both name their signer the same way
// to the routing policy and the ACK path. It is safe for use by many
// goroutines.
type Validator struct {
	backends []string
	policy   map[string][]string
	nitpicky bool
	trust    *trustStore
	gpg      *gpgKeyring

	mu    sync.RWMutex
	gen   uint64 // trust store generation the cache belongs to
	cache map[certKey]*chainResult

	now func() time.Time // the clock validity periods are judged by
}

// chainResult is the outcome of checking one certificate field against the
// CA and CRL.
type chainResult struct {
	cert *x509.Certificate
	pub  *rsasig.PublicKey // made ready once per certificate, with libcrypto's copy
	err  *ValidationError
}

// maxChainCache bounds the chain cache: a flood of distinct forged
// certificates must not grow memory without limit.
const maxChainCache = 4096

// NewValidator builds a validator from the crypto and routing keys of cfg.
// The CA and CRL are read on first use, so a config whose CA is missing
// still makes a Validator; every validation then fails with [ReasonCA].
func NewValidator(cfg *Config) *Validator {
	return &Validator{
		backends: slices.Clone(cfg.CryptoValidateBackends),
		policy:   cfg.RoutingPolicy,
		nitpicky: cfg.RoutingNitpicky,
		trust:    newTrustStore(cfg.CACertLocation, cfg.CRLLocation),
		gpg:      newGPGKeyring(cfg.GPGHome, cfg.GPGKeys),
		cache:    make(map[certKey]*chainResult),
		now:      time.Now,
	}
}

// CheckTrust loads the CA certificate and the CRL if they are not loaded
// (or may have changed since they failed to), within ctx and a bound of
// its own, and returns why they cannot be used, a *[TrustError], or nil.
// Every x509 validation fails while they cannot; a reliable publish calls
// it before sending, since it could not judge the ACKs otherwise. Files
// that loaded are looked at again at most once a second, as validation
// does, so a file that breaks is reported within about a second.
func (v *Validator) CheckTrust(ctx context.Context) error {
	if !slices.Contains(v.backends, "x509") {
		return nil
	}
	if v.trust.filesUsable() {
		// Loaded and good: the files are looked at again once a second
		// at most, as for validation, not at every reliable publish.
		v.trust.refreshIfDue(v.now())
		if v.trust.filesUsable() {
			return nil
		}
	}
	_, _, _, err := v.trust.getCtx(ctx, true)
	return err
}

// close cancels the validator's downloads for good.
func (v *Validator) close() { v.trust.close() }

// Validate checks env and returns the signer's CN.
func (v *Validator) Validate(env *Envelope) (string, error) {
	return v.validate(env, v.policy, v.nitpicky)
}

// ValidateSignedBy checks env and that its signer's CN is exactly cn,
// whatever the routing policy says.
func (v *Validator) ValidateSignedBy(env *Envelope, cn string) error {
	_, err := v.validate(env, map[string][]string{env.Topic: {cn}}, true)
	return err
}

// identify validates env under no routing policy and returns its signer:
// ValidateSignedBy(env, R) holds exactly when this succeeds with R.
func (v *Validator) identify(env *Envelope) (string, error) {
	return v.validate(env, nil, false)
}

func (v *Validator) validate(env *Envelope, policy map[string][]string, nitpicky bool) (string, error) {
	backend, err := v.checkBackend(env)
	if err != nil {
		return "", err
	}
	if backend == "gpg" {
		name, verr := v.gpg.verify(env, v.now())
		if verr != nil {
			return "", verr
		}
		return name, checkPolicy(policy, nitpicky, env.Topic, name)
	}
	if !hasField(env, fieldSignature) {
		return "", invalid(ReasonUnsigned, "no signature field", nil)
	}
	sig, err := decodeB64(env.Signature)
	if err != nil {
		return "", invalid(ReasonMalformed, "signature", err)
	}
	res := v.chain(env.Certificate)
	if res.err != nil {
		return "", res.err
	}
	cn := res.cert.Subject.CommonName
	if err := verifyFields(res.pub, env, sig); err != nil {
		err.Signer = cn
		return "", err
	}
	if err := checkPolicy(policy, nitpicky, env.Topic, cn); err != nil {
		return "", err
	}
	return cn, nil
}

// checkPolicy applies the routing policy to a validated signer, whichever
// backend named it.
func checkPolicy(policy map[string][]string, nitpicky bool, topic, cn string) error {
	if allowed, ok := policy[topic]; ok {
		if !slices.Contains(allowed, cn) {
			return &ValidationError{Reason: ReasonPolicy, Signer: cn,
				Detail: fmt.Sprintf("%q may not publish on %q", cn, topic)}
		}
	} else if nitpicky {
		return &ValidationError{Reason: ReasonPolicy, Signer: cn,
			Detail: fmt.Sprintf("topic %q is not in the routing policy", topic)}
	}
	return nil
}

// checkBackend picks the backend as fedmsg does: the crypto field when
// present, else x509 when there is a certificate, else gpg when there is a
// signature.
func (v *Validator) checkBackend(env *Envelope) (string, error) {
	backend := env.Crypto
	if !hasField(env, fieldCrypto) {
		switch {
		case hasField(env, fieldCertificate):
			backend = "x509"
		case hasField(env, fieldSignature):
			backend = "gpg"
		default:
			return "", invalid(ReasonUnsigned, "no crypto, signature or certificate field", nil)
		}
	}
	if !slices.Contains(v.backends, backend) {
		return "", invalid(ReasonBackend, fmt.Sprintf("backend %q is not accepted", backend), nil)
	}
	switch {
	case backend == "gpg":
		return backend, nil
	case backend != "x509":
		return "", invalid(ReasonBackend, fmt.Sprintf("backend %q is not supported", backend), nil)
	case !hasField(env, fieldCertificate):
		return "", invalid(ReasonUnsigned, "no certificate field", nil)
	}
	return backend, nil
}

// verifyFields checks the signature over the canonical text. A message that
// carries gilmsg_version or seq_id and fails is checked once more without
// them: Python gilmsg 0.1.2 adds the first after signing (WIRE.md §7),
// Python fedmsg's store the second (§11).
func verifyFields(pub *rsasig.PublicKey, env *Envelope, sig []byte) *ValidationError {
	buf := scratchBufs.Get().(*[]byte)
	text, err := signedText(*buf, env, nil)
	if err != nil {
		return invalid(ReasonMalformed, "canonical text", err)
	}
	ok := pub.VerifySHA1(text, sig) == nil
	for _, drop := range addedAfterSigning(env) {
		if ok {
			break
		}
		text, err = signedText(text[:0], env, drop)
		ok = err == nil && pub.VerifySHA1(text, sig) == nil
	}
	putScratch(buf, text) // VerifySHA1 keeps nothing of it
	if !ok {
		return invalid(ReasonSignature, "signature does not match the message", nil)
	}
	return nil
}

// signedText appends the text a signature over env covers, leaving out
// drop: from the parsed envelope where it can, else from its Fields.
func signedText(dst []byte, env *Envelope, drop []string) ([]byte, error) {
	if text, ok := env.appendSignedTextFast(dst, drop); ok {
		return text, nil
	}
	return appendSignedText(dst, env.Fields(), drop...)
}

// decodeB64 decodes as Python's base64.b64decode does by default: characters
// outside the alphabet (the newlines every 76 columns, among others) are
// discarded, and the padding must then be right.
func decodeB64(s string) ([]byte, error) {
	// Go's decoder skips line breaks itself: what fedmsg writes decodes as
	// it is, and only other stray characters need a copy without them.
	if !b64AndNewlines(s) {
		s = strings.Map(func(r rune) rune {
			if r < utf8.RuneSelf && b64Alphabet[r] {
				return r
			}
			return -1
		}, s)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return b, nil
}

// b64AndNewlines reports whether s holds nothing but base64's alphabet,
// padding and line breaks.
func b64AndNewlines(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !b64Alphabet[c] && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// b64Alphabet marks base64's alphabet and its padding.
var b64Alphabet = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" {
		t[c] = true
	}
	return t
}()

// chain returns the (cached) chain result for a certificate field. On a
// failure that a newer CA or CRL could change, it reloads them once and
// retries (CRLs rotate; fedmsg issue #481).
func (v *Validator) chain(certField string) *chainResult {
	now := v.now()
	v.trust.refreshIfDue(now)
	if res, ok := v.cached(certField); ok {
		return checkValidity(res, now)
	}
	gen, roots, crl, err := v.trust.get(false)
	res := v.verifyChain(certField, gen, roots, crl, err, now)
	// A certificate that parsed but did not chain, or a CA that did not
	// load, may be fixed by what is on disk now; garbage never is.
	if res.err != nil && (res.cert != nil || res.err.Reason == ReasonCA) {
		if gen2, roots2, crl2, err2 := v.trust.get(true); gen2 != gen {
			res = v.verifyChain(certField, gen2, roots2, crl2, err2, now)
		}
	}
	return checkValidity(res, now)
}

func (v *Validator) cached(certField string) (*chainResult, bool) {
	gen := v.trust.generation()
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.gen != gen {
		return nil, false
	}
	res, ok := v.cache[keyOf(certField)]
	return res, ok
}

// certKey identifies a certificate field in the chain cache by its hash:
// keys of a fixed size, so that a flood of distinct, huge junk fields costs
// 32 bytes an entry, not the fields.
type certKey [sha256.Size]byte

func keyOf(certField string) certKey {
	// Hashed where it is: the field is a kilobyte or more, and Sum256
	// only reads it.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(certField), len(certField)))
}

// checkValidity applies the validity period at the time of each message, so
// a cached certificate that expires stops validating.
func checkValidity(res *chainResult, now time.Time) *chainResult {
	if res.err != nil {
		return res
	}
	if err := validityError(res.cert, now); err != nil {
		err.Signer = res.cert.Subject.CommonName
		return &chainResult{err: err}
	}
	return res
}

// validityError says whether now is before or after cert's validity
// period; nil when it is inside.
func validityError(cert *x509.Certificate, now time.Time) *ValidationError {
	switch {
	case now.Before(cert.NotBefore):
		return invalid(ReasonNotYetValid, "certificate not valid until "+cert.NotBefore.UTC().Format(time.RFC3339), nil)
	case now.After(cert.NotAfter):
		return invalid(ReasonExpired, "certificate expired at "+cert.NotAfter.UTC().Format(time.RFC3339), nil)
	}
	return nil
}

func (v *Validator) verifyChain(certField string, gen uint64, roots *x509.CertPool, crl *crlSet, loadErr error, now time.Time) *chainResult {
	res := &chainResult{}
	var pub *rsa.PublicKey
	res.cert, pub, res.err = parseCertField(certField)
	if res.err == nil {
		if loadErr != nil {
			return &chainResult{err: invalid(ReasonCA, "", loadErr)}
		}
		res.err = checkChain(res.cert, roots, crl, now)
	}
	if res.err == nil {
		// Only certificates the CA vouches for get a libcrypto copy:
		// a flood of junk ones costs no C memory.
		res.pub = rsasig.NewPublicKey(pub)
	}
	if res.err != nil && res.cert != nil {
		res.err.Signer = res.cert.Subject.CommonName
	}
	v.store(certField, gen, res)
	return res
}

func (v *Validator) store(certField string, gen uint64, res *chainResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen != gen {
		v.gen = gen
		clear(v.cache)
	}
	if len(v.cache) >= maxChainCache {
		clear(v.cache)
	}
	v.cache[keyOf(certField)] = res
}

func parseCertField(certField string) (*x509.Certificate, *rsa.PublicKey, *ValidationError) {
	der, err := decodeB64(certField)
	if err != nil {
		return nil, nil, invalid(ReasonCertificate, "certificate field", err)
	}
	block, _ := pem.Decode(der)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, invalid(ReasonCertificate, "certificate field holds no PEM certificate", nil)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, invalid(ReasonCertificate, "certificate field", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return cert, nil, invalid(ReasonCertificate, fmt.Sprintf("public key is %T, not RSA", cert.PublicKey), nil)
	}
	return cert, pub, nil
}

func checkChain(cert *x509.Certificate, roots *x509.CertPool, crl *crlSet, now time.Time) *ValidationError {
	if err := validityError(cert, now); err != nil {
		return err
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return invalid(ReasonCertificate, "not issued by the trusted CA", err)
	}
	if crl != nil {
		if err := crl.check(cert, now); err != nil {
			return err
		}
	}
	return nil
}
