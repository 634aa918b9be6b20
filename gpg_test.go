package gilmsg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
)

// gpgVector is one line of testdata/gpg/vectors.jsonl, made and judged by
// Python fedmsg's gpg backend (testdata/gpg/gen_vectors.py).
type gpgVector struct {
	Name        string `json:"name"`
	Body        string `json:"body"`
	ValidPython any    `json:"valid_python"` // true, false, or "raises <exception>"
	Valid       bool   `json:"valid"`
	Signer      string `json:"signer"`
	Why         string `json:"why"`
}

func loadGPGVectors(t testing.TB) []gpgVector {
	t.Helper()
	f, err := os.Open("testdata/gpg/vectors.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []gpgVector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v gpgVector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		t.Fatal("no gpg vectors")
	}
	return vs
}

// gpgKeys is testdata/gpg/gpg_keys.json: name → fingerprint.
func gpgKeys(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile("testdata/gpg/gpg_keys.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func gpgConfig(t testing.TB, home string) *Config {
	cfg := DefaultConfig()
	cfg.CryptoValidateBackends = []string{"gpg"}
	cfg.GPGHome = home
	cfg.GPGKeys = gpgKeys(t)
	return cfg
}

// needGPG skips a test that runs the gpg binary when it is missing (make
// deps installs gnupg).
func needGPG(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg binary not installed (make deps installs gnupg)")
	}
}

// gnupgHome makes a throwaway GnuPG home (a keybox, as GnuPG ≥ 2.1 writes)
// holding the given key files; its gpg-agent is stopped at cleanup.
func gnupgHome(t testing.TB, keyFiles ...string) string {
	t.Helper()
	needGPG(t)
	// A short path: gpg-agent's socket must fit in sun_path.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	// Few S2K rounds: gpg-agent otherwise calibrates them, for seconds on a
	// loaded machine, the first time it protects a key.
	if err := os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("s2k-count 65536\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range keyFiles {
		if _, err := runGPG(home, nil, "--import", f); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// Verdicts and signers agree with Python's gpg backend on its own vectors,
// whichever form the keyring takes.
func TestGPGVectors(t *testing.T) {
	homes := map[string]func(t *testing.T) string{
		"armored file": func(*testing.T) string { return "testdata/gpg/pubring.asc" },
		"binary file":  func(*testing.T) string { return "testdata/gpg/pubring.gpg" },
		"gnupg home":   func(t *testing.T) string { return gnupgHome(t, "testdata/gpg/pubring.asc") },
	}
	vectors := loadGPGVectors(t)
	for kind, home := range homes {
		t.Run(kind, func(t *testing.T) {
			val := NewValidator(gpgConfig(t, home(t)))
			for _, vec := range vectors {
				signer, err := validateBody(val, []byte(vec.Body))
				if (err == nil) != vec.Valid || signer != vec.Signer {
					t.Errorf("%s: got (%q, %v), want valid=%v signer %q (python %v: %s)", vec.Name, signer, err, vec.Valid, vec.Signer, vec.ValidPython, vec.Why)
				}
				if pyValid := vec.ValidPython == true; pyValid != vec.Valid && !strings.HasPrefix(vec.Name, "key ") {
					t.Errorf("%s: differs from Python (%v) without a reason", vec.Name, vec.ValidPython)
				}
			}
		})
	}
}

// Where gilmsg-go refuses what Python accepts, it says why.
func TestGPGReasons(t *testing.T) {
	val := NewValidator(gpgConfig(t, "testdata/gpg/pubring.asc"))
	want := map[string]Reason{
		"key revoked":                     ReasonRevoked,
		"key expired":                     ReasonExpired,
		"signature by stranger":           ReasonUnknownKey,
		"signature borrowed":              ReasonSignature,
		"msg value changed":               ReasonSignature,
		"signature bad base64":            ReasonMalformed,
		"signature missing":               ReasonUnsigned,
		"msg missing":                     ReasonMalformed,
		"signature is a public key":       ReasonMalformed,
		"signature inline signed message": ReasonMalformed,
		"crypto x509":                     ReasonBackend,
	}
	for _, vec := range loadGPGVectors(t) {
		r, ok := want[vec.Name]
		if !ok {
			continue
		}
		delete(want, vec.Name)
		_, err := validateBody(val, []byte(vec.Body))
		if ReasonOf(err) != r {
			t.Errorf("%s: %v, want reason %s", vec.Name, err, r)
		}
		var ve *ValidationError
		if vec.Name == "key revoked" && (!errors.As(err, &ve) || ve.Signer != "revoked01") {
			t.Errorf("%s: signer not named in %v", vec.Name, err)
		}
	}
	for name := range want {
		t.Errorf("vector %q missing", name)
	}
}

// A reader that does not list gpg in crypto_validate_backends refuses
// every gpg message.
func TestGPGNeedsBackend(t *testing.T) {
	cfg := gpgConfig(t, "testdata/gpg/pubring.asc")
	cfg.CryptoValidateBackends = []string{"x509"}
	val := NewValidator(cfg)
	for _, vec := range loadGPGVectors(t) {
		if _, err := validateBody(val, []byte(vec.Body)); err == nil {
			t.Errorf("%s: valid without gpg in crypto_validate_backends", vec.Name)
		}
	}
}

// The signer's name comes from gpg_keys; validate_signed_by and the
// routing policy use it.
func TestGPGSignedByAndPolicy(t *testing.T) {
	vecs := map[string]gpgVector{}
	for _, v := range loadGPGVectors(t) {
		vecs[v.Name] = v
	}
	cfg := gpgConfig(t, "testdata/gpg/pubring.asc")
	cfg.RoutingPolicy = map[string][]string{"org.gilmsg.dev.test.gpg": {"backend01"}}
	val := NewValidator(cfg)
	env, err := ParseEnvelope([]byte(vecs["plain rsa"].Body))
	if err != nil {
		t.Fatal(err)
	}
	if err := val.ValidateSignedBy(env, "app01"); err != nil {
		t.Errorf("signed by app01: %v", err)
	}
	if err := val.ValidateSignedBy(env, "backend01"); ReasonOf(err) != ReasonPolicy {
		t.Errorf("signed by backend01: %v, want a policy refusal", err)
	}
	if _, err := val.Validate(env); ReasonOf(err) != ReasonPolicy {
		t.Errorf("app01 on a backend01 topic: %v", err)
	}
	env, _ = ParseEnvelope([]byte(vecs["plain ed25519"].Body))
	if signer, err := val.Validate(env); err != nil || signer != "backend01" {
		t.Errorf("backend01 on its topic: %q, %v", signer, err)
	}
	// The stranger's key carries app01's user id; only the fingerprint
	// counts.
	env, _ = ParseEnvelope([]byte(vecs["signature by stranger"].Body))
	if err := val.ValidateSignedBy(env, "app01"); err == nil {
		t.Error("a stranger with app01's user id passed as app01")
	}
}

// Natively signed messages verify; the signature covers msg alone; a key
// spec may be a key id.
func TestGPGSignNative(t *testing.T) {
	keys := gpgKeys(t)
	val := NewValidator(gpgConfig(t, "testdata/gpg/pubring.asc"))
	for _, name := range []string{"app01", "backend01"} {
		t.Run(name, func(t *testing.T) {
			cfg := gpgConfig(t, "testdata/gpg/"+name+".sec.asc")
			cfg.GPGSigningKey = "0x" + strings.ToLower(keys[name][24:])
			s, err := LoadGPGSigner(cfg, "somehost")
			if err != nil {
				t.Fatal(err)
			}
			if s.CN() != name || s.gpg.entity == nil {
				t.Fatalf("signer %q native=%v", s.CN(), s.gpg.entity != nil)
			}
			fields := map[string]any{fieldTopic: "t", fieldMsg: map[string]any{"a": "é"}, fieldMsgID: "x", fieldCertificate: "junk"}
			if err := s.Sign(fields); err != nil {
				t.Fatal(err)
			}
			if _, ok := fields[fieldCertificate]; ok || fields[fieldCrypto] != "gpg" {
				t.Fatalf("fields after signing: %v", fields)
			}
			env, _ := envelopeFromFields(fields)
			if signer, err := val.Validate(env); err != nil || signer != name {
				t.Fatalf("validate: %q, %v", signer, err)
			}
			fields[fieldMsgID] = "changed"
			env, _ = envelopeFromFields(fields)
			if _, err := val.Validate(env); err != nil {
				t.Errorf("envelope change broke the signature: %v", err)
			}
			fields[fieldMsg] = map[string]any{"a": "e"}
			env, _ = envelopeFromFields(fields)
			if _, err := val.Validate(env); ReasonOf(err) != ReasonSignature {
				t.Errorf("payload change: %v", err)
			}
		})
	}
}

// From a GnuPG home, the key is picked by host name through gpg_keys and
// exported once; signing then needs no gpg.
func TestGPGSignFromHome(t *testing.T) {
	home := gnupgHome(t, "testdata/gpg/pubring.asc", "testdata/gpg/backend01.sec.asc")
	cfg := gpgConfig(t, home)
	s, err := LoadGPGSigner(cfg, "backend01")
	if err != nil {
		t.Fatal(err)
	}
	if s.gpg.entity == nil || s.CN() != "backend01" {
		t.Fatalf("not native, or wrong name %q", s.CN())
	}
	fields := map[string]any{fieldMsg: "hi"}
	if err := s.Sign(fields); err != nil {
		t.Fatal(err)
	}
	env, _ := envelopeFromFields(fields)
	if signer, err := NewValidator(cfg).Validate(env); err != nil || signer != "backend01" {
		t.Fatalf("validate: %q, %v", signer, err)
	}
	// app01's secret key is not in this home.
	if _, err := LoadGPGSigner(cfg, "app01"); !errors.Is(err, ErrCannotSign) {
		t.Errorf("signing with a public key only: %v", err)
	}
}

// Bad keyrings and signing setups give clear errors, never a panic.
func TestGPGBadSetups(t *testing.T) {
	vec := loadGPGVectors(t)[0]
	garbage := filepath.Join(t.TempDir(), "garbage.asc")
	os.WriteFile(garbage, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n"), 0o600)
	empty := t.TempDir()
	for name, home := range map[string]string{
		"missing":      filepath.Join(t.TempDir(), "nope"),
		"garbage file": garbage,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := validateBody(NewValidator(gpgConfig(t, home)), []byte(vec.Body))
			if ReasonOf(err) != ReasonKeyring || !strings.Contains(err.Error(), "gpg") {
				t.Errorf("got %v, want a keyring error", err)
			}
		})
	}
	t.Run("no gpg binary", func(t *testing.T) {
		t.Setenv("PATH", empty)
		_, err := validateBody(NewValidator(gpgConfig(t, empty)), []byte(vec.Body))
		if ReasonOf(err) != ReasonKeyring || !strings.Contains(err.Error(), "install gnupg") {
			t.Errorf("got %v", err)
		}
		cfg := gpgConfig(t, empty)
		cfg.GPGSigningKey = gpgKeys(t)["app01"]
		if _, err := LoadGPGSigner(cfg, "h"); !errors.Is(err, ErrCannotSign) || !strings.Contains(err.Error(), "install gnupg") {
			t.Errorf("signer: %v", err)
		}
	})
	for name, change := range map[string]func(*Config){
		"no key for host": func(c *Config) {},
		"bad key spec":    func(c *Config) { c.GPGSigningKey = "app01" },
		"no gpg_home":     func(c *Config) { c.GPGHome = ""; c.GPGSigningKey = gpgKeys(t)["app01"] },
		"public key only": func(c *Config) { c.GPGSigningKey = gpgKeys(t)["app01"] },
		"unknown key":     func(c *Config) { c.GPGSigningKey = strings.Repeat("AB", 20) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := gpgConfig(t, "testdata/gpg/pubring.asc")
			change(cfg)
			if _, err := LoadGPGSigner(cfg, "nohost"); !errors.Is(err, ErrCannotSign) {
				t.Errorf("got %v, want ErrCannotSign", err)
			}
		})
	}
}

// A changed key file is read again: a key added later validates.
func TestGPGKeyringReload(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.asc")
	stranger, err := os.ReadFile("testdata/gpg/stranger.sec.asc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keys, stranger, 0o600); err != nil {
		t.Fatal(err)
	}
	val := NewValidator(gpgConfig(t, keys))
	var body string
	for _, v := range loadGPGVectors(t) {
		if v.Name == "plain rsa" {
			body = v.Body
		}
	}
	if _, err := validateBody(val, []byte(body)); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("before: %v", err)
	}
	pub, _ := os.ReadFile("testdata/gpg/pubring.asc")
	if err := os.WriteFile(keys, append(stranger, pub...), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	os.Chtimes(keys, future, future)
	waitFor(t, "the new key", func() bool {
		signer, err := validateBody(val, []byte(body))
		return err == nil && signer == "app01"
	})
}

// Junk in the signature field is a verdict, never a panic.
func FuzzGPGSignature(f *testing.F) {
	for _, v := range loadGPGVectors(f) {
		env, err := ParseEnvelope([]byte(v.Body))
		if err == nil {
			f.Add(env.Signature)
		}
	}
	keys, err := loadGPGKeys("testdata/gpg/pubring.asc")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string) {
		raw, err := decodeB64(sig)
		if err != nil {
			raw = []byte(sig)
		}
		if _, verr := verifyDetached(keys, []byte(`{"a":1}`), raw, time.Now()); verr == nil {
			t.Fatal("a signature over other text verified")
		}
	})
}

func BenchmarkGPGSign(b *testing.B) {
	for _, name := range []string{"app01", "backend01"} {
		b.Run(name, func(b *testing.B) {
			cfg := gpgConfig(b, "testdata/gpg/"+name+".sec.asc")
			cfg.GPGSigningKey = gpgKeys(b)[name]
			s, err := LoadGPGSigner(cfg, "h")
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := s.Sign(map[string]any{fieldMsg: map[string]any{"n": 1}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGPGValidate(b *testing.B) {
	val := NewValidator(gpgConfig(b, "testdata/gpg/pubring.asc"))
	for _, v := range loadGPGVectors(b) {
		if v.Name != "plain rsa" && v.Name != "plain ed25519" {
			continue
		}
		b.Run(v.Signer, func(b *testing.B) {
			for b.Loop() {
				if _, err := validateBody(val, []byte(v.Body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A reliable publish under gpg completes on the recipient's own ACK only:
// an ACK signed by a key nobody trusts, or by a trusted key that gpg_keys
// gives another name, does not count.
func TestGPGReliablePublish(t *testing.T) {
	dir := t.TempDir()
	pub, err := os.ReadFile("testdata/gpg/pubring.asc")
	if err != nil {
		t.Fatal(err)
	}
	// Each bus's gpg_home: the shared public keys plus its own secret key.
	homeFor := func(secret string) string {
		sec, err := os.ReadFile("testdata/gpg/" + secret + ".sec.asc")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, secret+".asc")
		if err := os.WriteFile(p, append(append([]byte{}, pub...), sec...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stranger, err := loadGPGKeys("testdata/gpg/stranger.sec.asc")
	if err != nil {
		t.Fatal(err)
	}
	keys := gpgKeys(t)
	signers := map[string][2]string{ // bus name → gpg_home, signing key
		"app01":     {homeFor("app01"), keys["app01"]},
		"backend01": {homeFor("backend01"), keys["backend01"]},
		// Named as services of backend01's host, so that the ACK listener
		// hears them when it listens for backend01.
		"impostor.backend01": {homeFor("stranger"), gpgFingerprint(stranger[0])},
		"turncoat.backend01": {homeFor("app01"), keys["app01"]},
	}
	n := newTestNet(t)
	n.mutate = func(c *Config) {
		c.CryptoBackend = "gpg"
		c.CryptoValidateBackends = []string{"gpg"}
		c.GPGKeys = keys
		c.GPGHome, c.GPGSigningKey = signers[c.Name][0], signers[c.Name][1]
	}
	p := n.start("app01")
	cs, fakes := n.consumers(t, "impostor.backend01", "turncoat.backend01")
	genuine := n.start("backend01")

	_, err = p.Publish(ctxT(t), "job", map[string]any{"n": 1}, WithRecipients("backend01"), WithAckTimeout(2*time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != "backend01" || len(te.Acked) != 0 {
		t.Fatalf("err = %v, want a timeout naming backend01", err)
	}
	for i, f := range fakes {
		if f.Stats().AcksSent == 0 {
			t.Fatalf("consumer %d sent no ACK: the test proves nothing", i)
		}
	}
	if s := p.Stats(); s.AcksMatched != 0 {
		t.Fatalf("a forged ACK counted: %+v", s)
	}
	waitFor(t, "the forged ACKs to be rejected", func() bool {
		r := p.Stats().AcksRejected
		return r[ackRejectNotRecipient] > 0 && r["invalid: "+string(ReasonUnknownKey)] > 0
	})

	cs.run(t, "backend01", genuine)
	r, err := p.Publish(ctxT(t), "job", map[string]any{"n": 2}, WithRecipients("backend01"), WithAckTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Acks) != 1 || r.Acks[0].Recipient != "backend01" {
		t.Fatalf("acks %+v", r.Acks)
	}
	waitFor(t, "backend01 to see the message", func() bool { return cs.count("backend01", r.MsgID) == 1 })
}

// A passphrase-protected key is not exported: gpg signs each message,
// using the passphrase gpg-agent holds, and fails at once without it.
func TestGPGSignProtectedKey(t *testing.T) {
	// Made here rather than by gpg, whose key generation with a
	// passphrase takes seconds on a loaded machine.
	e, err := openpgp.NewEntity("prot01", "", "prot01@gilmsg.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	if err != nil {
		t.Fatal(err)
	}
	// The fewest S2K rounds: gpg-agent unprotects the key at every
	// signature.
	fast := &packet.Config{S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, S2KCount: 65536}}
	if err := e.EncryptPrivateKeys([]byte("sekrit"), fast); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "prot01.asc")
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(keyFile, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	home := gnupgHome(t, keyFile)
	fpr := gpgFingerprint(e)
	cfg := gpgConfig(t, home)
	cfg.GPGKeys = map[string]string{"prot01": fpr}
	cfg.GPGSigningKey = "prot01@gilmsg.test"
	if _, err := LoadGPGSigner(cfg, "h"); !errors.Is(err, ErrCannotSign) {
		t.Fatalf("a user id as the key: %v", err)
	}
	cfg.GPGSigningKey = fpr
	s, err := LoadGPGSigner(cfg, "h")
	if err != nil {
		t.Fatal(err)
	}
	if s.gpg.entity != nil || s.CN() != "prot01" {
		t.Fatalf("native=%v name %q: a protected key was exported", s.gpg.entity != nil, s.CN())
	}
	if err := s.Sign(map[string]any{fieldMsg: 1}); !errors.Is(err, ErrCannotSign) {
		t.Fatalf("signing without the passphrase: %v", err)
	}
	// Once gpg-agent holds the passphrase, as a service's would.
	if _, err := runGPG(home, []byte("x"), "--pinentry-mode", "loopback", "--passphrase", "sekrit", "--local-user", fpr, "--detach-sign"); err != nil {
		t.Fatal(err)
	}
	fields := map[string]any{fieldMsg: map[string]any{"n": 1}}
	if err := s.Sign(fields); err != nil {
		t.Fatal(err)
	}
	env, _ := envelopeFromFields(fields)
	if signer, err := NewValidator(cfg).Validate(env); err != nil || signer != "prot01" {
		t.Fatalf("validate: %q, %v", signer, err)
	}
}

// Key expiry is judged by the validator's clock: the key that expired in
// 2020 validates in 2020.
func TestGPGValidatorClock(t *testing.T) {
	val := NewValidator(gpgConfig(t, "testdata/gpg/pubring.asc"))
	val.now = func() time.Time { return time.Date(2020, 3, 2, 0, 0, 0, 0, time.UTC) }
	for _, v := range loadGPGVectors(t) {
		if v.Name != "key expired" {
			continue
		}
		if signer, err := validateBody(val, []byte(v.Body)); err != nil || signer != "expired01" {
			t.Fatalf("in 2020: %q, %v", signer, err)
		}
		return
	}
	t.Fatal("no key expired vector")
}
