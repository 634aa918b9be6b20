// Package devpki makes a throwaway certificate authority, and OpenPGP keys,
// for a local gilmsg bus: tests, demos, benchmarks and `gilmsg dev-pki`.
//
// [New] lays out a directory as fedmsg expects an ssldir (ca.crt, ca.key,
// crl.pem and, per certname, <certname>.crt and <certname>.key); [PKI.Config]
// returns a [gilmsg.Config] that signs and validates with it. [PKI.Revoke],
// [PKI.IssueExpired] and [PKI.IssueRogue] make the certificates a validator
// must refuse, to test that it does. [NewGPG] (or [Options].GPG) makes an
// OpenPGP key per host for the gpg backend, and [GPG.Configure] points a
// configuration at them.
//
// It is a package of its own, beside the root, because a service never
// needs it: the root package is the API a service uses in place of
// fedmsg.publish, and a CA that writes its keys unencrypted has no place
// there. The x509 CA and the OpenPGP keys live together because they are
// one thing to a test: the keys of a throwaway bus, under one directory,
// named by the same hosts. Its keys are for test buses only.
package devpki

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

// PKI is a throwaway certificate authority laid out as fedmsg expects an
// ssldir. The certname is also the certificate's CN, so a routing policy
// names hosts exactly as they were issued.
//
// Its methods are safe for use by many goroutines. Its fields are set by
// [New]; change none of them.
type PKI struct {
	// Dir is the ssldir, an absolute path.
	Dir string
	// CACert is the path of the CA certificate (Dir/ca.crt).
	CACert string
	// CRL is the path of the revocation list (Dir/crl.pem).
	CRL string
	// Hosts are the certnames issued by [New], in the order given.
	// Later Issue* calls leave it unchanged so that it can be read without
	// locking; [PKI.Config] lists every certname issued.
	Hosts []string
	// GPG holds an OpenPGP key per host (in Dir/gpg), made when
	// [Options].GPG is set; nil otherwise.
	GPG *GPG

	core *devpki.PKI
}

// Options tunes [New]. The zero value is usable.
type Options struct {
	// Hosts are the certnames (and CNs) to issue. Default (nil)
	// {"shell-localhost"}; an empty non-nil list is an error.
	Hosts []string
	// KeyBits is the RSA key size, from 1024 to 8192. Default 2048.
	KeyBits int
	// Validity is how long the CA, its certificates and its CRL stay valid.
	// Default one year.
	Validity time.Duration
	// GPG also makes an OpenPGP key per host (see [NewGPG]) and has
	// [PKI.Config] validate gpg messages with them. Default false.
	GPG bool
}

// New creates dir (mode 0700) if needed, a new CA in it, a CRL with no
// entries, and one certificate per host. It refuses to overwrite an existing
// ca.crt or ca.key (the error matches [io/fs.ErrExist]) so that pointing it at a
// real ssldir by mistake destroys nothing. Bad options match
// [gilmsg.ErrConfig].
//
// Key generation takes most of the time, the keys being made in parallel:
// about 80 ms of CPU a 2048-bit key (several times that under -race),
// 15 ms a 1024-bit one, seconds a 4096-bit one.
func New(dir string, opts Options) (*PKI, error) {
	c, err := devpki.New(dir, devpki.Options{Hosts: opts.Hosts, KeyBits: opts.KeyBits, Validity: opts.Validity, GPG: opts.GPG})
	if err != nil {
		return nil, configError(err)
	}
	p := &PKI{Dir: c.Dir, CACert: c.CACert, CRL: c.CRL, Hosts: slices.Clone(c.Hosts), core: c}
	if c.GPG != nil {
		p.GPG = &GPG{KeyFile: c.GPG.KeyFile, Home: c.GPG.Home, Keys: maps.Clone(c.GPG.Keys)}
	}
	return p, nil
}

// Issue writes <certname>.crt and <certname>.key, a fresh key and a
// certificate signed by the CA. Issuing a certname again replaces its files;
// the older certificate stays valid unless revoked.
func (p *PKI) Issue(certname string) error { return configError(p.core.Issue(certname)) }

// IssueExpired is [PKI.Issue] with a validity period that ended a day ago.
func (p *PKI) IssueExpired(certname string) error {
	return configError(p.core.IssueExpired(certname))
}

// IssueRogue writes <certname>.crt and <certname>.key with CN=certname but
// signed by a second CA that nothing trusts: the forgery a validator must
// reject. It replaces any trusted files of that certname, which
// [PKI.Revoke] then no longer knows.
func (p *PKI) IssueRogue(certname string) error {
	return configError(p.core.IssueRogue(certname))
}

// Revoke adds the current CA-signed certificate of certname to the CRL and
// rewrites crl.pem with a higher CRL number. Revoking twice is harmless. An
// unknown certname is an error matching [io/fs.ErrNotExist].
func (p *PKI) Revoke(certname string) error { return p.core.Revoke(certname) }

// Config returns a configuration for a local bus signed with this PKI:
// ssldir, ca_cert_location and crl_location point into Dir, messages are
// signed and validated, topic_prefix is "org.example", environment "dev",
// certnames maps every certname issued so far to itself, and
// "shell.<short hostname>" to the first host so that cert_prefix "shell"
// works. Endpoints is empty for the caller to fill; everything else is
// [gilmsg.DefaultConfig]. Each call returns a configuration of its own.
func (p *PKI) Config() *gilmsg.Config {
	s := p.core.Settings()
	c := gilmsg.DefaultConfig()
	c.TopicPrefix = "org.example"
	c.Environment = "dev"
	c.SSLDir, c.CACertLocation, c.CRLLocation = s.SSLDir, s.CACert, s.CRL
	c.SignMessages = true
	c.ValidateSignatures = true
	c.Endpoints = map[string][]string{}
	maps.Copy(c.Certnames, s.Certnames)
	if p.GPG != nil {
		p.GPG.Configure(c)
	}
	return c
}

// WriteConfig writes [PKI.Config], with endpoints added to it, to path as
// indented JSON under fedmsg's key names, replacing path in one rename.
func (p *PKI) WriteConfig(path string, endpoints map[string][]string) error {
	c := p.Config()
	maps.Copy(c.Endpoints, endpoints)
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("dev PKI: encoding config: %w", err)
	}
	return devpki.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// configError makes the core's option errors match [gilmsg.ErrConfig],
// which the core cannot import; their text stays the same.
func configError(err error) error {
	if errors.Is(err, devpki.ErrInvalid) {
		return badOption{err}
	}
	return err
}

type badOption struct{ err error }

func (e badOption) Error() string   { return e.err.Error() }
func (e badOption) Unwrap() []error { return []error{e.err, gilmsg.ErrConfig} }
