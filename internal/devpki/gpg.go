package devpki

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
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

// gpgTimeout bounds the one gpg --import: a wedged agent must fail the
// call, not hang it.
const gpgTimeout = time.Minute

// NewGPG creates dir (mode 0700) with keys.asc, one Ed25519 key per
// host (the legacy EdDSA form, which GnuPG 2.2 reads), and, when gpg is
// installed, the GnuPG home dir/gnupg with those keys imported. It refuses
// to overwrite an existing keys.asc (the error matches [fs.ErrExist]).
func NewGPG(dir string, hosts []string) (*GPG, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: dev gpg keys need at least one host", ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("dev gpg: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("dev gpg: %w", err)
	}
	d := &GPG{KeyFile: filepath.Join(abs, "keys.asc"), Keys: make(map[string]string, len(hosts))}
	if _, err := os.Lstat(d.KeyFile); err == nil {
		return nil, fmt.Errorf("dev gpg: %s already exists: %w", d.KeyFile, fs.ErrExist)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}
	for _, h := range hosts {
		e, err := openpgp.NewEntity(h, "gilmsg dev key", h+"@gilmsg.invalid", cfg)
		if err != nil {
			return nil, fmt.Errorf("dev gpg: key for %q: %w", h, err)
		}
		if err := e.SerializePrivate(w, nil); err != nil {
			return nil, fmt.Errorf("dev gpg: key for %q: %w", h, err)
		}
		// gpg_keys' form: the primary key's fingerprint in upper-case hex.
		d.Keys[h] = strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(d.KeyFile, buf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("dev gpg: %w", err)
	}
	if _, err := exec.LookPath("gpg"); err != nil {
		return d, nil
	}
	home := filepath.Join(abs, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, fmt.Errorf("dev gpg: %w", err)
	}
	err = importKeys(home, d.KeyFile)
	// Importing secret keys started an agent for the home; stop it.
	exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
	if err != nil {
		return nil, fmt.Errorf("dev gpg: %w", err)
	}
	d.Home = home
	return d, nil
}

func importKeys(home, keyFile string) error {
	ctx, cancel := context.WithTimeout(context.Background(), gpgTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "gpg", "--homedir", home, "--batch", "--no-tty", "--quiet", "--import", keyFile)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gpg --homedir %s --import %s: %w: %s", home, keyFile, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
