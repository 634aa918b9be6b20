package gilmsg

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/rsasig"
)

// Signer signs envelopes with the x509 backend (WIRE.md §4): RSA PKCS#1 v1.5
// over SHA-1 of the canonical text; or, made by [LoadGPGSigner], with the
// gpg backend (§12). The key is parsed and precomputed once; a Signer is
// safe for use by many goroutines.
type Signer struct {
	key    *rsa.PrivateKey
	rsaKey *rsasig.PrivateKey // key, with libcrypto's copy where there is one
	cn     string
	// certField is the certificate field, ready to put in a message, and
	// certValue the same boxed once (boxing a string allocates).
	certField string
	certValue any
	gpg       *gpgSigner // the gpg backend's key; key and certField unused

	cert     *x509.Certificate // x509 only
	certName string            // how errors name it: "certificate <path>"
}

// LoadSigner reads <ssldir>/<certname>.key and <ssldir>/<certname>.crt.
// Errors name the file at fault and match [ErrCannotSign].
func LoadSigner(ssldir, certname string) (*Signer, error) {
	keyPath := filepath.Join(ssldir, certname+".key")
	certPath := filepath.Join(ssldir, certname+".crt")
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	return newSigner(keyPEM, certPEM, "private key "+keyPath, "certificate "+certPath)
}

// NewSigner builds a Signer from a PEM private key (PKCS#1 or PKCS#8, RSA)
// and a PEM certificate whose public key matches it.
func NewSigner(keyPEM, certPEM []byte) (*Signer, error) {
	return newSigner(keyPEM, certPEM, "private key", "certificate")
}

// newSigner is NewSigner with the key and the certificate named as errors
// should name them.
func newSigner(keyPEM, certPEM []byte, keyName, certName string) (*Signer, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("%w: %s: no PEM private key", ErrCannotSign, keyName)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(kb.Bytes); err == nil {
		key = k
	} else if k8, err8 := x509.ParsePKCS8PrivateKey(kb.Bytes); err8 == nil {
		rk, ok := k8.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s is %T, not RSA", ErrCannotSign, keyName, k8)
		}
		key = rk
	} else {
		return nil, fmt.Errorf("%w: %s: %v", ErrCannotSign, keyName, err)
	}

	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM certificate", ErrCannotSign, certName)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCannotSign, certName, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%w: %s (CN %s) does not match the %s", ErrCannotSign, certName, cert.Subject.CommonName, keyName)
	}
	// Python sends the certificate re-encoded as PEM, not the file as is.
	normalised := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	certField := base64Wrap76(normalised)
	return &Signer{
		key:       key,
		rsaKey:    rsasig.NewPrivateKey(key),
		cn:        cert.Subject.CommonName,
		certField: certField,
		certValue: certField,
		cert:      cert,
		certName:  certName,
	}, nil
}

// checkUsable refuses to sign with a certificate every receiver would
// refuse: outside its validity period, or revoked by the CRL v validates
// with. The CRL is looked at only when it and the CA are files that load:
// a publisher need not have them, and starting must not wait on a
// download. gpg keys are checked when loaded.
func (s *Signer) checkUsable(v *Validator) error {
	if s.cert == nil {
		return nil
	}
	what := fmt.Sprintf("%s (CN %s)", s.certName, s.cn)
	if err := validityError(s.cert, v.now()); err != nil {
		// "expired at ..." or "not valid until ...".
		return fmt.Errorf("%w: %s %s", ErrCannotSign, what, strings.TrimPrefix(err.Detail, "certificate "))
	}
	t := v.trust
	if t.crlLoc == "" || isURL(t.crlLoc) || isURL(t.caLoc) {
		return nil
	}
	if _, _, crl, err := t.get(false); err == nil && crl != nil {
		if verr := crl.check(s.cert, v.now()); verr != nil && verr.Reason == ReasonRevoked {
			return fmt.Errorf("%w: %s is revoked by the CRL %s (%s)", ErrCannotSign, what, t.crlLoc, verr.Detail)
		}
	}
	return nil
}

// CN is the common name of the signing certificate (gpg: the key's name in
// gpg_keys, else its fingerprint): the name recipients are addressed by.
func (s *Signer) CN() string { return s.cn }

// Sign sets crypto, signature and certificate on the envelope fields (gpg:
// crypto and signature).
func (s *Signer) Sign(fields map[string]any) error {
	if s.gpg != nil {
		return s.gpg.sign(fields)
	}
	fields[fieldCrypto] = "x509"
	buf := scratchBufs.Get().(*[]byte)
	text, err := appendSignedText(*buf, fields)
	if err != nil {
		return err
	}
	sig, err := s.signText(text) // hashes text and keeps nothing of it
	putScratch(buf, text)
	if err != nil {
		return err
	}
	fields[fieldSignature] = sig
	fields[fieldCertificate] = s.certValue
	return nil
}

// signEach does what Sign does to each of fields, the x509 signatures
// made in one call into libcrypto; errs[i] is fields[i]'s.
func (s *Signer) signEach(fields []map[string]any) (errs []error) {
	errs = make([]error, len(fields))
	if s.gpg != nil {
		for i, f := range fields {
			errs[i] = s.gpg.sign(f)
		}
		return errs
	}
	texts := make([][]byte, 0, len(fields))
	bufs := make([]*[]byte, 0, len(fields))
	which := make([]int, 0, len(fields))
	for i, f := range fields {
		f[fieldCrypto] = "x509"
		buf := scratchBufs.Get().(*[]byte)
		text, err := appendSignedText(*buf, f)
		if err != nil {
			putScratch(buf, *buf)
			errs[i] = err
			continue
		}
		texts, bufs, which = append(texts, text), append(bufs, buf), append(which, i)
	}
	sigs, err := s.rsaKey.SignSHA1Each(texts) // hashes the texts and keeps nothing of them
	for j, buf := range bufs {
		putScratch(buf, texts[j])
	}
	for j, i := range which {
		if err != nil {
			errs[i] = fmt.Errorf("%w: %v", ErrCannotSign, err)
			continue
		}
		fields[i][fieldSignature] = base64Wrap76(sigs[j])
		fields[i][fieldCertificate] = s.certValue
	}
	return errs
}

// envelopeBytes bounds what Sign adds to an envelope's encoding.
func (s *Signer) envelopeBytes() int64 {
	if s.gpg != nil {
		return 16 << 10 // an OpenPGP signature of any RSA key, base64
	}
	// base64Wrap76's lines, each newline written \n.
	sig := (s.key.Size() + 2) / 3 * 4
	sig += 2 * (sig/76 + 1)
	cert := len(s.certField) + len(s.certField)/38 + 2 // a newline in 76, written \n
	return int64(sig + cert + 128)
}

func (s *Signer) signText(text []byte) (string, error) {
	sig, err := s.rsaKey.SignSHA1(text)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	return base64Wrap76(sig), nil
}

// base64Wrap76 is b's base64 split into 76-column lines, each ending in
// "\n", as M2Crypto did and fedmsg still does: one allocation.
func base64Wrap76(b []byte) string {
	enc := base64.StdEncoding
	n := enc.EncodedLen(len(b))
	lines := max(1, (n+75)/76)
	out := make([]byte, n+lines)
	enc.Encode(out[lines:], b) // at the end, then moved down line by line
	for i, w := 0, 0; i < lines; i++ {
		from := lines + i*76
		w += copy(out[w:], out[from:min(from+76, len(out))])
		out[w] = '\n'
		w++
	}
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// certnameFor picks the certname as fedmsg does (WIRE.md §4): by
// "<cert_prefix>.<hostname>" when cert_prefix is set, else by the bus name,
// except that an active publisher named relay_inbound signs as
// "shell.<hostname>".
func certnameFor(c *Config, name, hostname string) (string, error) {
	var index string
	switch {
	case c.CertPrefix != "":
		index = c.CertPrefix + "." + hostname
	case name == "relay_inbound":
		index = "shell." + hostname
	case name == "":
		return "", &ConfigError{Key: "name", Err: fmt.Errorf("%w: signing needs a name or cert_prefix to choose a certname", ErrCannotSign)}
	default:
		index = name
	}
	certname, ok := c.Certnames[index]
	if !ok {
		return "", &ConfigError{Key: "certnames", Err: fmt.Errorf(`%w: no entry %q: add "certnames": {%q: "<the certificate's file name in ssldir, without .crt>"}`,
			ErrCannotSign, index, index)}
	}
	return certname, nil
}

// shortHostname is the host name up to its first dot, as fedmsg uses it.
func shortHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}
