package gilmsg

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The gpg backend (WIRE.md §12): a detached OpenPGP signature over the
// canonical JSON of msg alone, base64 in the signature field, no
// certificate. Verification is native (go-crypto). Keys come from gpg_home;
// since GnuPG 2.1 its public keys sit in a keybox that only gpg reads, so
// the keyring is exported with `gpg --export` when it loads and whenever the
// keybox changes. Unlike Python, a signer is named (gpg_keys maps a name to
// a fingerprint), and expired or revoked keys are refused.

// gpgCommandTimeout bounds one run of the gpg binary.
const gpgCommandTimeout = 30 * time.Second

// gpgKeyring holds the public keys of gpg_home: a GnuPG home directory, or
// one key file (armored or binary, public or secret keys). It reloads when
// the files change, looked at about once a second.
type gpgKeyring struct {
	home  string
	names []gpgName // gpg_keys, sorted by name

	checkedAt atomic.Int64

	mu     sync.Mutex
	loaded bool
	stamps [3]fileStamp
	keys   openpgp.EntityList
	err    error
}

func newGPGKeyring(home string, names map[string]string) *gpgKeyring {
	if home == "" {
		// Python's default when validating.
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".gnupg")
		}
	}
	return &gpgKeyring{home: home, names: gpgNames(names)}
}

// gpgName is one gpg_keys entry, its key spec normalized.
type gpgName struct{ name, spec string }

func gpgNames(m map[string]string) []gpgName {
	out := make([]gpgName, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, gpgName{name, normalizeKeySpec(m[name])})
	}
	return out
}

// get returns the current keys, reading them again when the files changed
// since they were last looked at (at most once per refreshEvery).
func (k *gpgKeyring) get(now time.Time) (openpgp.EntityList, error) {
	last := k.checkedAt.Load()
	due := now.UnixNano()-last >= int64(refreshEvery) && k.checkedAt.CompareAndSwap(last, now.UnixNano())
	k.mu.Lock()
	defer k.mu.Unlock()
	// A failed load is tried again when due: the gpg binary may have
	// been installed since, which no stamp shows.
	if !k.loaded || (due && (k.err != nil || k.currentStamps() != k.stamps)) {
		k.loaded = true
		k.stamps = k.currentStamps()
		k.keys, k.err = loadGPGKeys(k.home)
	}
	return k.keys, k.err
}

// currentStamps covers every place a GnuPG home keeps public keys: the
// keybox (2.1+), the old keyring, and keyboxd's database (2.4+); for a key
// file, the file itself.
func (k *gpgKeyring) currentStamps() [3]fileStamp {
	var s [3]fileStamp
	paths := []string{k.home}
	if fi, err := os.Stat(k.home); err == nil && fi.IsDir() {
		paths = []string{filepath.Join(k.home, "pubring.kbx"), filepath.Join(k.home, "pubring.gpg"),
			filepath.Join(k.home, "public-keys.d", "pubring.db")}
	}
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			s[i].missing = true
			continue
		}
		s[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	return s
}

// loadGPGKeys reads the keys of a GnuPG home or key file.
func loadGPGKeys(home string) (openpgp.EntityList, error) {
	fi, err := os.Stat(home)
	if err != nil {
		return nil, fmt.Errorf("gpg_home: %w", err)
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(home)
		if err != nil {
			return nil, fmt.Errorf("gpg_home: %w", err)
		}
		return parseGPGKeys(data, home)
	}
	// A home without a keybox but with the old keyring needs no gpg binary.
	if _, err := os.Stat(filepath.Join(home, "pubring.kbx")); errors.Is(err, os.ErrNotExist) {
		if data, err := os.ReadFile(filepath.Join(home, "pubring.gpg")); err == nil {
			return parseGPGKeys(data, filepath.Join(home, "pubring.gpg"))
		}
	}
	data, err := runGPG(home, nil, "--export")
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, nil // an empty keyring: every signer is unknown
	}
	return parseGPGKeys(data, home)
}

// parseGPGKeys reads binary keys, or armored key blocks (several blocks,
// as `cat a.asc b.asc` makes, are read in turn).
func parseGPGKeys(data []byte, from string) (openpgp.EntityList, error) {
	const begin = "-----BEGIN PGP"
	if !bytes.Contains(data[:min(len(data), 1024)], []byte(begin)) {
		keys, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gpg keys in %s: %w", from, err)
		}
		return keys, nil
	}
	var all openpgp.EntityList
	for i, block := range bytes.Split(data, []byte(begin)) {
		if i == 0 {
			continue // text before the first block
		}
		keys, err := openpgp.ReadArmoredKeyRing(io.MultiReader(strings.NewReader(begin), bytes.NewReader(block)))
		if err != nil {
			return nil, fmt.Errorf("gpg keys in %s (block %d): %w", from, i, err)
		}
		all = append(all, keys...)
	}
	return all, nil
}

// runGPG runs the gpg binary on a home directory and returns its output.
func runGPG(home string, stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gpgCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gpg", append([]string{"--homedir", home, "--batch", "--no-tty", "--quiet"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("the gpg binary is needed to read the GnuPG home %s (install gnupg): %w", home, err)
		}
		return nil, fmt.Errorf("gpg --homedir %s %s: %w: %s", home, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Fingerprint returns the upper-case hex fingerprint of an entity's primary
// key: the signer's identity under gpg.
func gpgFingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// keyMatches reports whether a normalized key spec names the entity: its
// fingerprint, or the key id at the fingerprint's end (16 digits at least).
func keyMatches(spec, fpr string) bool {
	return spec == fpr || (len(spec) >= 16 && strings.HasSuffix(fpr, spec))
}

// nameOf maps a fingerprint to its name in gpg_keys (the first in sorted
// order, should two names share a key), or returns the fingerprint.
func (k *gpgKeyring) nameOf(fpr string) string {
	for _, n := range k.names {
		if keyMatches(n.spec, fpr) {
			return n.name
		}
	}
	return fpr
}

// verify checks a gpg-signed envelope at time now (expiry, revocation) and
// returns the signer's name.
func (k *gpgKeyring) verify(env *Envelope, now time.Time) (string, *ValidationError) {
	if !hasField(env, fieldSignature) || env.Signature == "" {
		return "", invalid(ReasonUnsigned, "no signature", nil)
	}
	if !hasField(env, fieldMsg) {
		return "", invalid(ReasonMalformed, "no msg field: nothing was signed", nil)
	}
	sig, err := decodeB64(env.Signature)
	if err != nil {
		return "", invalid(ReasonMalformed, "signature", err)
	}
	text, err := MarshalCanonical(env.Msg())
	if err != nil {
		return "", invalid(ReasonMalformed, "canonical text of msg", err)
	}
	keys, err := k.get(time.Now()) // the wall clock paces reloads
	if err != nil {
		return "", invalid(ReasonKeyring, "", err)
	}
	fpr, verr := verifyDetached(keys, text, sig, now)
	if verr != nil {
		if fpr != "" {
			verr.Signer = k.nameOf(fpr)
		}
		return "", verr
	}
	return k.nameOf(fpr), nil
}

// verifyDetached checks every signature packet of sig over text, as gpg
// --verify does: each must be good, and here all must come from one key.
// It returns the primary key's fingerprint, also on a failure past the
// key lookup.
func verifyDetached(keys openpgp.EntityList, text, sig []byte, now time.Time) (string, *ValidationError) {
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP SIGNATURE-----")) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", invalid(ReasonMalformed, "armored signature", err)
		}
		var body bytes.Buffer
		if _, err := body.ReadFrom(block.Body); err != nil {
			return "", invalid(ReasonMalformed, "armored signature", err)
		}
		sig = body.Bytes()
	}
	pkts, err := splitPackets(sig)
	if err != nil {
		return "", invalid(ReasonMalformed, "signature", err)
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	var signer string
	for _, p := range pkts {
		e, err := openpgp.CheckDetachedSignature(keys, bytes.NewReader(text), bytes.NewReader(p), cfg)
		fpr := ""
		if e != nil {
			fpr = gpgFingerprint(e)
		}
		if err != nil {
			return fpr, gpgVerdict(err)
		}
		if signer != "" && fpr != signer {
			return fpr, invalid(ReasonSignature, "signatures by more than one key", nil)
		}
		signer = fpr
	}
	return signer, nil
}

// gpgVerdict classifies a go-crypto verification error.
func gpgVerdict(err error) *ValidationError {
	var structural pgperrors.StructuralError
	var unsupported pgperrors.UnsupportedError
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return invalid(ReasonUnknownKey, "the signing key is not in gpg_home", nil)
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrSignatureExpired):
		return invalid(ReasonExpired, "", err)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return invalid(ReasonRevoked, "", err)
	case errors.As(err, &structural), errors.As(err, &unsupported):
		return invalid(ReasonMalformed, "signature packet", err)
	}
	return invalid(ReasonSignature, "signature does not match msg", err)
}

// maxSignaturePackets bounds the work a hostile signature field can ask for.
const maxSignaturePackets = 8

// splitPackets cuts an OpenPGP packet stream into whole packets (RFC 4880
// §4.2, old and new headers). Partial lengths, which signatures never use,
// are refused.
func splitPackets(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(out) == maxSignaturePackets {
			return nil, fmt.Errorf("more than %d packets", maxSignaturePackets)
		}
		tag := b[0]
		if tag&0x80 == 0 {
			return nil, fmt.Errorf("not an OpenPGP packet (byte %#x)", tag)
		}
		var hdr, n int
		switch {
		case tag&0x40 != 0 && len(b) >= 2 && b[1] < 192:
			hdr, n = 2, int(b[1])
		case tag&0x40 != 0 && len(b) >= 3 && b[1] < 224:
			hdr, n = 3, (int(b[1])-192)<<8+int(b[2])+192
		case tag&0x40 != 0 && len(b) >= 6 && b[1] == 255:
			hdr, n = 6, int(b[2])<<24|int(b[3])<<16|int(b[4])<<8|int(b[5])
		case tag&0x40 == 0 && tag&3 == 0 && len(b) >= 2:
			hdr, n = 2, int(b[1])
		case tag&0x40 == 0 && tag&3 == 1 && len(b) >= 3:
			hdr, n = 3, int(b[1])<<8|int(b[2])
		case tag&0x40 == 0 && tag&3 == 2 && len(b) >= 5:
			hdr, n = 5, int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4])
		default:
			return nil, fmt.Errorf("truncated or indefinite-length packet header")
		}
		if n < 0 || n > len(b)-hdr {
			return nil, fmt.Errorf("packet of %d bytes, %d left", n, len(b)-hdr)
		}
		out = append(out, b[:hdr+n])
		b = b[hdr+n:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty signature")
	}
	return out, nil
}

// gpgSigner signs with the gpg backend. Natively, with the secret key
// exported from gpg_home once at load (or read from a key file); when gpg
// will not export it unprotected, by running `gpg --detach-sign` for each
// message, as Python does.
type gpgSigner struct {
	entity *openpgp.Entity // native signing; nil: run gpg
	home   string
	keyID  string // what gpg's --local-user is given
	fpr    string
}

// loadGPGSigner picks the signing key as fedmsg does: gpg_signing_key,
// else gpg_keys[<short hostname>]. It returns the signer and the name
// recipients know it by.
func loadGPGSigner(c *Config, hostname string) (*gpgSigner, string, error) {
	spec := c.GPGSigningKey
	if spec == "" {
		var ok bool
		if spec, ok = c.GPGKeys[hostname]; !ok {
			return nil, "", &ConfigError{Key: "gpg_signing_key", Err: fmt.Errorf("%w: neither gpg_signing_key nor gpg_keys[%q] is set", ErrCannotSign, hostname)}
		}
	}
	if c.GPGHome == "" {
		return nil, "", &ConfigError{Key: "gpg_home", Err: fmt.Errorf("%w: gpg signing needs gpg_home", ErrCannotSign)}
	}
	s, err := newGPGSigner(c.GPGHome, spec)
	if err != nil {
		return nil, "", err
	}
	return s, (&gpgKeyring{names: gpgNames(c.GPGKeys)}).nameOf(s.fpr), nil
}

func newGPGSigner(home, spec string) (*gpgSigner, error) {
	if err := checkKeySpec(spec); err != nil {
		return nil, &ConfigError{Key: "gpg_signing_key", Err: fmt.Errorf("%w: %w", ErrCannotSign, err)}
	}
	want := normalizeKeySpec(spec)
	fi, err := os.Stat(home)
	if err != nil {
		return nil, fmt.Errorf("%w: gpg_home: %v", ErrCannotSign, err)
	}
	var data []byte
	if fi.IsDir() {
		// An unprotected key exports without a prompt; a protected one
		// fails here and is left to gpg itself.
		data, err = runGPG(home, nil, "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", want)
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", ErrCannotSign, err)
		}
	} else {
		data, err = os.ReadFile(home)
	}
	var keys openpgp.EntityList
	if err == nil && len(data) > 0 {
		keys, err = parseGPGKeys(data, home)
	}
	// A key file may hold a key's public and secret forms: look at both.
	for _, e := range keys {
		if fpr := gpgFingerprint(e); keyMatches(want, fpr) {
			if sk, ok := e.SigningKey(time.Now()); ok && sk.PrivateKey != nil && !sk.PrivateKey.Encrypted {
				return &gpgSigner{entity: e, fpr: fpr}, nil
			}
		}
	}
	if fi.IsDir() {
		// Not exported (protected, or gpg refused): gpg signs, if it has
		// the secret key.
		if out, lerr := runGPG(home, nil, "--with-colons", "--list-secret-keys", want); lerr == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" && keyMatches(want, f[9]) {
					return &gpgSigner{home: home, keyID: want, fpr: f[9]}, nil
				}
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	return nil, fmt.Errorf("%w: no usable, unprotected secret key %s in %s", ErrCannotSign, spec, home)
}

// sign sets crypto and signature: fedmsg's gpg.sign, with the signature as
// text (Python 3's fedmsg puts bytes there and cannot publish).
func (s *gpgSigner) sign(fields map[string]any) error {
	text, err := MarshalCanonical(fields[fieldMsg])
	if err != nil {
		return err
	}
	var sig []byte
	if s.entity != nil {
		var buf bytes.Buffer
		if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(text), nil); err != nil {
			return fmt.Errorf("%w: %v", ErrCannotSign, err)
		}
		sig = buf.Bytes()
	} else if sig, err = runGPG(s.home, text, "--pinentry-mode", "error", "--local-user", s.keyID, "--detach-sign"); err != nil {
		// pinentry-mode error: a passphrase gpg-agent does not hold fails
		// at once instead of waiting for a prompt nobody sees.
		return fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	fields[fieldCrypto] = "gpg"
	fields[fieldSignature] = base64.StdEncoding.EncodeToString(sig)
	delete(fields, fieldCertificate)
	return nil
}

// LoadGPGSigner loads the gpg backend's signing key for a host (its short
// name): gpg_signing_key, else gpg_keys[hostname], from gpg_home. It signs
// natively when the secret key can be read unprotected (from a key file, or
// exported once with gpg), else it runs `gpg --detach-sign` per message.
func LoadGPGSigner(c *Config, hostname string) (*Signer, error) {
	g, name, err := loadGPGSigner(c, hostname)
	if err != nil {
		return nil, err
	}
	return &Signer{cn: name, gpg: g}, nil
}
