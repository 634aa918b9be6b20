package devpki

import (
	"maps"
	"slices"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

// GPG is a throwaway OpenPGP key per host for tests and demos of the gpg
// backend. Its secret keys are unprotected: never use them outside a test
// bus.
type GPG struct {
	// KeyFile holds every key, secret and public, armored: a gpg_home that
	// gilmsg reads without the gpg binary.
	KeyFile string
	// Home is a GnuPG home holding the same keys, which Python fedmsg can
	// use too; "" when the gpg binary is not installed.
	Home string
	// Keys maps each host to its key's fingerprint, as gpg_keys does.
	Keys map[string]string
}

// NewGPG creates dir (mode 0700) with keys.asc, one Ed25519 key per
// host (the legacy EdDSA form, which GnuPG 2.2 reads), and, when gpg is
// installed, the GnuPG home dir/gnupg with those keys imported. It refuses
// to overwrite an existing keys.asc (the error matches [io/fs.ErrExist]). No
// host is an error matching [gilmsg.ErrConfig].
func NewGPG(dir string, hosts []string) (*GPG, error) {
	c, err := devpki.NewGPG(dir, hosts)
	if err != nil {
		return nil, configError(err)
	}
	return &GPG{KeyFile: c.KeyFile, Home: c.Home, Keys: c.Keys}, nil
}

// Configure makes c validate with these keys (adding gpg to
// crypto_validate_backends) and name their signers: gpg_home (Home, else
// KeyFile) and gpg_keys. Signing with gpg also needs crypto_backend "gpg"
// and gpg_signing_key (or a host named as this machine).
func (d *GPG) Configure(c *gilmsg.Config) {
	if !slices.Contains(c.CryptoValidateBackends, "gpg") {
		c.CryptoValidateBackends = append(slices.Clone(c.CryptoValidateBackends), "gpg")
	}
	// The GnuPG home when there is one, so that Python peers can share it.
	c.GPGHome = d.Home
	if c.GPGHome == "" {
		c.GPGHome = d.KeyFile
	}
	c.GPGKeys = maps.Clone(d.Keys)
}
