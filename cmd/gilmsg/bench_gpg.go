package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/google/uuid"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// gpgRate is the gpg backend's sign and verify rate with one kind of key,
// through the library as a bus uses it: Signer.Sign on the envelope fields,
// Validator.Validate on the parsed message (canonical JSON of msg
// included), in one goroutine.
type gpgRate struct {
	key            string // "rsa" or "ed25519"
	sign, validate float64
}

// gpgPhase measures the gpg backend beside the RSA floor of the x509 one:
// an RSA key of the bench's size, and an Ed25519 key.
func (e *benchEnv) gpgPhase(ctx context.Context, r *benchResults) error {
	for _, k := range []struct {
		name string
		cfg  *packet.Config
	}{
		{"rsa", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: e.o.keyBits}},
		{"ed25519", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}},
	} {
		rate, err := e.gpgRate(ctx, k.name, k.cfg)
		if err != nil {
			return fmt.Errorf("gpg %s: %w", k.name, err)
		}
		r.gpg = append(r.gpg, rate)
	}
	return nil
}

func (e *benchEnv) gpgRate(ctx context.Context, name string, kcfg *packet.Config) (gpgRate, error) {
	entity, err := openpgp.NewEntity(benchPublisher, "gilmsg bench", "", kcfg)
	if err != nil {
		return gpgRate{}, err
	}
	var keyFile bytes.Buffer
	w, err := armor.Encode(&keyFile, openpgp.PrivateKeyType, nil)
	if err != nil {
		return gpgRate{}, err
	}
	if err := entity.SerializePrivate(w, nil); err != nil {
		return gpgRate{}, err
	}
	w.Close()
	home := filepath.Join(e.pki.Dir, "bench-gpg-"+name+".asc")
	if err := os.WriteFile(home, keyFile.Bytes(), 0o600); err != nil {
		return gpgRate{}, err
	}
	fpr := fmt.Sprintf("%X", entity.PrimaryKey.Fingerprint)
	cfg := gilmsg.DefaultConfig()
	cfg.CryptoBackend, cfg.CryptoValidateBackends = "gpg", []string{"gpg"}
	cfg.GPGHome, cfg.GPGSigningKey = home, fpr
	cfg.GPGKeys = map[string]string{benchPublisher: fpr}
	signer, err := gilmsg.LoadGPGSigner(cfg, "bench")
	if err != nil {
		return gpgRate{}, err
	}
	now := time.Now()
	fields := func() map[string]any {
		return map[string]any{
			"topic": benchPrefix + "msg", "msg": e.payload, "timestamp": now.Unix(),
			"msg_id": strconv.Itoa(now.Year()) + "-" + uuid.NewString(), "i": 1, "username": "bench",
		}
	}
	rate := gpgRate{key: name}
	if rate.sign, err = ratePerSecond(ctx, e.o.duration/2, func() error { return signer.Sign(fields()) }); err != nil {
		return rate, err
	}
	signed := fields()
	if err := signer.Sign(signed); err != nil {
		return rate, err
	}
	body, err := gilmsg.MarshalCanonical(signed)
	if err != nil {
		return rate, err
	}
	env, err := gilmsg.ParseEnvelope(body)
	if err != nil {
		return rate, err
	}
	val := gilmsg.NewValidator(cfg)
	rate.validate, err = ratePerSecond(ctx, e.o.duration/2, func() error {
		who, err := val.Validate(env)
		if err == nil && who != benchPublisher {
			err = fmt.Errorf("validated as %q", who)
		}
		return err
	})
	return rate, err
}

// gpgNumbers are the JSON keys of the gpg phase.
func (r *benchResults) gpgNumbers() []benchKV {
	var kv []benchKV
	for _, g := range r.gpg {
		kv = append(kv, benchKV{"gpg_sign_per_s_" + g.key, g.sign}, benchKV{"gpg_verify_per_s_" + g.key, g.validate})
	}
	return kv
}

// gpgRows are the table rows of the gpg phase.
func (r *benchResults) gpgRows(row func(...string)) {
	for _, g := range r.gpg {
		row("gpg "+g.key+" sign, verify, 1 goroutine", fmt.Sprintf("%.0f /s, %.0f /s", g.sign, g.validate),
			"library path: Sign and Validate of a message")
	}
}
