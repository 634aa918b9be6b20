// Package devpki makes throwaway certificate authorities and OpenPGP keys
// for tests, demos and benchmarks: the generation core of the public package
// github.com/gilmsg/gilmsg-go/devpki. It does not import the root package,
// so that the root's own tests (package gilmsg) can use it; what needs a
// *gilmsg.Config (Config, WriteConfig, GPG.Configure) lives in the public
// package and, for the root's tests, in their helpers, both built on
// [PKI.Settings].
package devpki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// ErrInvalid marks a bad option or certname. Its text is gilmsg.ErrInvalid's:
// the public package makes these errors match gilmsg.ErrInvalid too, which
// this package cannot name.
var ErrInvalid = errors.New("gilmsg: bad configuration")

// PKI is a throwaway certificate authority laid out as fedmsg expects an
// ssldir: ca.crt, ca.key, crl.pem and, per certname, <certname>.crt and
// <certname>.key. The certname is also the certificate's CN, so a routing
// policy names hosts exactly as they were issued.
//
// It exists for demos, tests and benchmarks; its keys are written unencrypted.
// Its methods are safe for use by many goroutines.
type PKI struct {
	// Dir is the ssldir, an absolute path.
	Dir string
	// CACert is the path of the CA certificate (Dir/ca.crt).
	CACert string
	// CRL is the path of the revocation list (Dir/crl.pem).
	CRL string
	// Hosts are the certnames issued by [New], in the order given.
	// Later Issue* calls leave it unchanged so that it can be read without
	// locking; [PKI.Settings] lists every certname issued.
	Hosts []string
	// GPG holds an OpenPGP key per host (in Dir/gpg), made when
	// [Options].GPG is set; nil otherwise.
	GPG *GPG

	keyBits  int
	validity time.Duration
	caKey    *rsa.PrivateKey
	caCert   *x509.Certificate

	mu        sync.Mutex
	serial    int64
	crlNumber int64
	issued    []string            // every certname with files in Dir, in issue order
	trusted   map[string]*big.Int // certname → serial of its CA-signed certificate
	revoked   []x509.RevocationListEntry
	rogueKey  *rsa.PrivateKey
	rogueCert *x509.Certificate
}

// Options tunes [New]. The zero value is usable.
type Options struct {
	// Hosts are the certnames (and CNs) to issue. Default (nil)
	// {"shell-localhost"}; an empty non-nil list is an error.
	Hosts []string
	// KeyBits is the RSA key size, from 1024 to MaxKeyBits. Default 2048.
	KeyBits int
	// Validity is how long the CA, its certificates and its CRL stay valid.
	// Default one year.
	Validity time.Duration
	// GPG also makes an OpenPGP key per host (see [NewGPG]). Default
	// false.
	GPG bool
}

// MaxKeyBits bounds Options.KeyBits: a CA and a host of 8192 bits already
// take tens of seconds to make, and a mistyped 100000 ran for hours with
// nothing to show.
const MaxKeyBits = 8192

const (
	devCAName      = "ca"
	devCRLName     = "crl.pem"
	devFirstSerial = 0x1000
	// Certificates start a minute in the past so that a peer whose clock is
	// slightly behind still accepts a certificate issued a moment ago.
	devBackdate   = time.Minute
	devCABackdate = 7 * 24 * time.Hour
)

// New creates dir (mode 0700) if needed, a new CA in it, a CRL with no
// entries, and one certificate per host. It refuses to overwrite an existing
// ca.crt or ca.key (the error matches [fs.ErrExist]) so that pointing it at a
// real ssldir by mistake destroys nothing.
func New(dir string, opts Options) (*PKI, error) {
	if opts.Hosts == nil {
		opts.Hosts = []string{"shell-localhost"}
	}
	if opts.KeyBits == 0 {
		opts.KeyBits = 2048
	}
	if opts.Validity == 0 {
		opts.Validity = 365 * 24 * time.Hour
	}
	switch {
	case len(opts.Hosts) == 0:
		return nil, fmt.Errorf("%w: dev PKI needs at least one host", ErrInvalid)
	case opts.KeyBits < 1024:
		return nil, fmt.Errorf("%w: dev PKI key size %d is below 1024 bits", ErrInvalid, opts.KeyBits)
	case opts.KeyBits > MaxKeyBits:
		return nil, fmt.Errorf("%w: dev PKI key size %d is above %d bits", ErrInvalid, opts.KeyBits, MaxKeyBits)
	case opts.Validity < 0:
		return nil, fmt.Errorf("%w: dev PKI validity %v is negative", ErrInvalid, opts.Validity)
	}
	seen := make(map[string]bool, len(opts.Hosts))
	for _, h := range opts.Hosts {
		if err := checkCertname(h); err != nil {
			return nil, err
		}
		if seen[h] {
			return nil, fmt.Errorf("%w: dev PKI host %q given twice", ErrInvalid, h)
		}
		seen[h] = true
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("dev PKI: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("dev PKI: %w", err)
	}
	for _, name := range []string{devCAName + ".crt", devCAName + ".key"} {
		if _, err := os.Lstat(filepath.Join(abs, name)); err == nil {
			return nil, fmt.Errorf("dev PKI: %s already holds %s: %w", abs, name, fs.ErrExist)
		}
	}

	p := &PKI{
		Dir:      abs,
		CACert:   filepath.Join(abs, devCAName+".crt"),
		CRL:      filepath.Join(abs, devCRLName),
		Hosts:    slices.Clone(opts.Hosts),
		keyBits:  opts.KeyBits,
		validity: opts.Validity,
		serial:   devFirstSerial,
		trusted:  make(map[string]*big.Int),
	}

	// Key generation dominates the cost (hundreds of ms each under -race),
	// so the CA key and the host keys are made in parallel.
	keys, err := generateKeys(1+len(opts.Hosts), opts.KeyBits)
	if err != nil {
		return nil, err
	}
	if err := p.makeCA(keys[0]); err != nil {
		return nil, err
	}
	if err := p.writeCRL(); err != nil {
		return nil, err
	}
	now := time.Now()
	for i, h := range opts.Hosts {
		if err := p.issue(h, keys[1+i], now.Add(-devBackdate), now.Add(p.validity)); err != nil {
			return nil, err
		}
	}
	if opts.GPG {
		if p.GPG, err = NewGPG(filepath.Join(abs, "gpg"), opts.Hosts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// generateKeys makes n RSA keys using at most one goroutine per CPU.
func generateKeys(n, bits int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			keys[i], errs[i] = rsa.GenerateKey(rand.Reader, bits)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dev PKI: generating RSA keys: %w", err)
	}
	return keys, nil
}

// checkCertname rejects names that would escape Dir or overwrite the CA.
func checkCertname(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: dev PKI certname %q is not a file name", ErrInvalid, name)
	case strings.ContainsAny(name, `/\`+"\x00"):
		return fmt.Errorf("%w: dev PKI certname %q contains a path separator", ErrInvalid, name)
	case name == devCAName:
		return fmt.Errorf("%w: dev PKI certname %q is the CA's own", ErrInvalid, name)
	case len(name) > maxCertname:
		// Checked before anything is written: a name the file system
		// refuses used to fail after the CA was made, and the directory
		// then refused a second try.
		return fmt.Errorf("%w: dev PKI certname %.64q... is %d bytes, above the %d a certificate's CN may hold (RFC 5280)", ErrInvalid, name, len(name), maxCertname)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("%w: dev PKI certname %q contains a control character", ErrInvalid, name)
	}
	return nil
}

// maxCertname is RFC 5280's upper bound on a CN, ub-common-name.
const maxCertname = 64

// makeCA self-signs the CA and writes ca.crt and ca.key.
func (p *PKI) makeCA(key *rsa.PrivateKey) error {
	now := time.Now()
	// Backdated by a week so that IssueExpired's certificates lie inside the
	// CA's own validity: they must fail only for being expired.
	cert, err := selfSignedCA(key, "gilmsg dev CA", p.nextSerial(), now.Add(-devCABackdate), now.Add(p.validity))
	if err != nil {
		return err
	}
	p.caKey, p.caCert = key, cert
	return WriteCertAndKey(p.Dir, devCAName, cert, key)
}

func selfSignedCA(key *rsa.PrivateKey, cn string, serial *big.Int, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          subjectKeyID(&key.PublicKey),
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("dev PKI: signing CA %q: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// subjectKeyID is RFC 5280's method 1: SHA-1 of the subjectPublicKey bits,
// which for RSA are the PKCS#1 encoding. openssl computes the same value, so
// our certificates look like the ones in testdata/pki.
func subjectKeyID(pub *rsa.PublicKey) []byte {
	sum := sha1.Sum(x509.MarshalPKCS1PublicKey(pub))
	return sum[:]
}

// nextSerial must be called with p.mu held or before p is shared.
func (p *PKI) nextSerial() *big.Int {
	s := big.NewInt(p.serial)
	p.serial++
	return s
}

// Issue writes <certname>.crt and <certname>.key, a fresh key and a
// certificate signed by the CA. Issuing a certname again replaces its files;
// the older certificate stays valid unless revoked.
func (p *PKI) Issue(certname string) error {
	now := time.Now()
	return p.issueNew(certname, now.Add(-devBackdate), now.Add(p.validity))
}

// IssueExpired is [PKI.Issue] with a validity period that ended a day ago.
func (p *PKI) IssueExpired(certname string) error {
	now := time.Now()
	return p.issueNew(certname, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
}

func (p *PKI) issueNew(certname string, notBefore, notAfter time.Time) error {
	if err := checkCertname(certname); err != nil {
		return err
	}
	// Outside the lock: concurrent Issue calls generate keys in parallel.
	key, err := rsa.GenerateKey(rand.Reader, p.keyBits)
	if err != nil {
		return fmt.Errorf("dev PKI: generating RSA key for %q: %w", certname, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issue(certname, key, notBefore, notAfter)
}

// issue must be called with p.mu held or before p is shared.
func (p *PKI) issue(certname string, key *rsa.PrivateKey, notBefore, notAfter time.Time) error {
	serial := p.nextSerial()
	cert, err := HostCert(certname, key, serial, notBefore, notAfter, p.caCert, p.caKey)
	if err != nil {
		return err
	}
	if err := WriteCertAndKey(p.Dir, certname, cert, key); err != nil {
		return err
	}
	p.trusted[certname] = serial
	p.noteIssued(certname)
	return nil
}

func (p *PKI) noteIssued(certname string) {
	if !slices.Contains(p.issued, certname) {
		p.issued = append(p.issued, certname)
	}
}

// HostCert signs a leaf for CN=cn fit for signing messages and for TLS.
func HostCert(cn string, key *rsa.PrivateKey, serial *big.Int, notBefore, notAfter time.Time, ca *x509.Certificate, caKey *rsa.PrivateKey) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          subjectKeyID(&key.PublicKey),
		AuthorityKeyId:        ca.SubjectKeyId,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("dev PKI: signing certificate for %q: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// IssueRogue writes <certname>.crt and <certname>.key with CN=certname but
// signed by a second CA that nothing trusts: the forgery a validator must
// reject. It replaces any trusted files of that certname, which
// [PKI.Revoke] then no longer knows.
func (p *PKI) IssueRogue(certname string) error {
	if err := checkCertname(certname); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, p.keyBits)
	if err != nil {
		return fmt.Errorf("dev PKI: generating RSA key for %q: %w", certname, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rogueCert == nil {
		// Made on first use only: most PKIs never need it, and a key costs.
		rk, err := rsa.GenerateKey(rand.Reader, p.keyBits)
		if err != nil {
			return fmt.Errorf("dev PKI: generating rogue CA key: %w", err)
		}
		now := time.Now()
		rc, err := selfSignedCA(rk, "gilmsg rogue CA", p.nextSerial(), now.Add(-devBackdate), now.Add(p.validity))
		if err != nil {
			return err
		}
		p.rogueKey, p.rogueCert = rk, rc
	}
	now := time.Now()
	cert, err := HostCert(certname, key, p.nextSerial(), now.Add(-devBackdate), now.Add(p.validity), p.rogueCert, p.rogueKey)
	if err != nil {
		return err
	}
	if err := WriteCertAndKey(p.Dir, certname, cert, key); err != nil {
		return err
	}
	delete(p.trusted, certname)
	p.noteIssued(certname)
	return nil
}

// Revoke adds the current CA-signed certificate of certname to the CRL and
// rewrites crl.pem with a higher CRL number. Revoking twice is harmless. An
// unknown certname is an error matching [fs.ErrNotExist].
func (p *PKI) Revoke(certname string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	serial, ok := p.trusted[certname]
	if !ok {
		return fmt.Errorf("dev PKI: no CA-signed certificate %q to revoke: %w", certname, fs.ErrNotExist)
	}
	if !slices.ContainsFunc(p.revoked, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(serial) == 0 }) {
		p.revoked = append(p.revoked, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: time.Now()})
	}
	return p.writeCRL()
}

// writeCRL must be called with p.mu held or before p is shared.
func (p *PKI) writeCRL() error {
	p.crlNumber++
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(p.crlNumber),
		ThisUpdate:                now.Add(-devBackdate),
		NextUpdate:                now.Add(p.validity),
		RevokedCertificateEntries: slices.Clone(p.revoked),
		SignatureAlgorithm:        x509.SHA256WithRSA,
	}, p.caCert, p.caKey)
	if err != nil {
		return fmt.Errorf("dev PKI: signing CRL: %w", err)
	}
	return WriteFileAtomic(p.CRL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}

// WriteCertAndKey writes <dir>/<name>.crt and <dir>/<name>.key, the key as
// unencrypted PKCS#8 ("PRIVATE KEY"): the form of testdata/pki, which both
// Python fedmsg and gilmsg.LoadSigner read.
func WriteCertAndKey(dir, name string, cert *x509.Certificate, key *rsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("dev PKI: encoding key %q: %w", name, err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// WriteFileAtomic replaces path in one rename, so that a validator reloading
// the CRL or a signer loading a key never reads half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("dev PKI: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, mode)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dev PKI: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dev PKI: %w", err)
	}
	return nil
}

// Settings are the values that point a bus at a PKI. The public package's
// PKI.Config and the root's test helpers put them in a gilmsg.Config with
// the rest of a local bus's configuration.
type Settings struct {
	// SSLDir, CACert and CRL are ssldir, ca_cert_location and crl_location.
	SSLDir, CACert, CRL string
	// Certnames maps every certname issued so far to itself, and
	// "shell.<short hostname>" to the first host so that cert_prefix
	// "shell" works.
	Certnames map[string]string
}

// Settings returns the PKI's settings now; each call returns its own maps.
func (p *PKI) Settings() Settings {
	s := Settings{SSLDir: p.Dir, CACert: p.CACert, CRL: p.CRL, Certnames: make(map[string]string)}
	p.mu.Lock()
	for _, name := range p.issued {
		s.Certnames[name] = name
	}
	p.mu.Unlock()
	s.Certnames["shell."+ShortHostname()] = p.Hosts[0]
	return s
}

// ShortHostname is the host name up to its first dot, as fedmsg and the
// root package's certname lookup use it; the two must agree for the
// "shell." certname to be found.
func ShortHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}
