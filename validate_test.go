package gilmsg

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vector is one line of testdata/vectors.jsonl or gilmsg-compat.jsonl.
type vector struct {
	Name        string `json:"name"`
	Topic       string `json:"topic"`
	Body        string `json:"body"`
	Valid       bool   `json:"valid"`
	ValidPython *bool  `json:"valid_python"`
	SignedText  string `json:"signed_text"`
	Signer      string `json:"signer"`
	Why         string `json:"why"`
}

func loadVectors(t testing.TB, file string) []vector {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", file)
	}
	return vs
}

// vectorsConfig is testdata/vectors-config.json with its paths made
// relative to testdata/pki, as the vectors were judged.
func vectorsConfig(t testing.TB, pkiDir string) *Config {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors-config.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.CACertLocation = filepath.Join(pkiDir, cfg.CACertLocation)
	cfg.CRLLocation = filepath.Join(pkiDir, cfg.CRLLocation)
	cfg.SSLDir = pkiDir
	return cfg
}

// certnameOf maps a vector signer's CN to its key pair in testdata/pki.
func certnameOf(cn string) string { return strings.TrimSuffix(cn, ".example.org") }

func validateBody(v *Validator, body []byte) (string, error) {
	env, err := ParseEnvelope(body)
	if err != nil {
		return "", err
	}
	return v.Validate(env)
}

func TestValidateVectors(t *testing.T) {
	val := NewValidator(vectorsConfig(t, "testdata/pki"))
	for _, file := range []string{"vectors.jsonl", "gilmsg-compat.jsonl"} {
		for _, vec := range loadVectors(t, file) {
			t.Run(vec.Name, func(t *testing.T) {
				signer, err := validateBody(val, []byte(vec.Body))
				if (err == nil) != vec.Valid {
					t.Fatalf("valid = %v (err %v), Python says %v: %s", err == nil, err, vec.Valid, vec.Why)
				}
				if signer != vec.Signer {
					t.Errorf("signer = %q, want %q", signer, vec.Signer)
				}
				if err != nil && !errors.Is(err, ErrInvalidSignature) && ReasonOf(err) != ReasonMalformed {
					t.Errorf("error %v matches no validation sentinel", err)
				}
			})
		}
	}
}

func TestValidateReasons(t *testing.T) {
	val := NewValidator(vectorsConfig(t, "testdata/pki"))
	want := map[string]Reason{
		"invalid/tampered-body":       ReasonSignature,
		"invalid/tampered-topic":      ReasonSignature,
		"invalid/swapped-signature":   ReasonSignature,
		"invalid/expired-cert":        ReasonExpired,
		"invalid/revoked-cert":        ReasonRevoked,
		"invalid/rogue-ca":            ReasonCertificate,
		"invalid/routing-policy":      ReasonPolicy,
		"invalid/unsigned":            ReasonUnsigned,
		"invalid/unknown-backend":     ReasonBackend,
		"invalid/no-signature":        ReasonUnsigned,
		"invalid/garbage-certificate": ReasonCertificate,
	}
	seen := 0
	for _, vec := range loadVectors(t, "vectors.jsonl") {
		r, ok := want[vec.Name]
		if !ok {
			continue
		}
		seen++
		t.Run(vec.Name, func(t *testing.T) {
			_, err := validateBody(val, []byte(vec.Body))
			if got := ReasonOf(err); got != r {
				t.Fatalf("reason = %q (%v), want %q", got, err, r)
			}
			// Every failure is still ErrInvalidSignature; only a
			// refused signer is ErrPolicyRefused, none is ErrTrust.
			if !errors.Is(err, ErrInvalidSignature) || errors.Is(err, ErrPolicyRefused) != (r == ReasonPolicy) || errors.Is(err, ErrTrust) {
				t.Errorf("%v: ErrInvalidSignature %v, ErrPolicyRefused %v, ErrTrust %v", err,
					errors.Is(err, ErrInvalidSignature), errors.Is(err, ErrPolicyRefused), errors.Is(err, ErrTrust))
			}
		})
	}
	if seen != len(want) {
		t.Fatalf("found %d of %d named vectors", seen, len(want))
	}
}

// Signing a valid vector's envelope again with the same key gives Python's
// body byte for byte: PKCS#1 v1.5 is deterministic.
func TestResignReproducesPython(t *testing.T) {
	n := 0
	for _, vec := range loadVectors(t, "vectors.jsonl") {
		if !vec.Valid {
			continue
		}
		t.Run(vec.Name, func(t *testing.T) {
			signer, err := LoadSigner("testdata/pki", certnameOf(vec.Signer))
			if err != nil {
				t.Fatal(err)
			}
			if signer.CN() != vec.Signer {
				t.Fatalf("CN = %q, want %q", signer.CN(), vec.Signer)
			}
			env, err := ParseEnvelope([]byte(vec.Body))
			if err != nil {
				t.Fatal(err)
			}
			fields := env.Fields()
			delete(fields, fieldSignature)
			delete(fields, fieldCertificate)
			delete(fields, fieldCrypto)
			if err := signer.Sign(fields); err != nil {
				t.Fatal(err)
			}
			got, err := MarshalCanonical(fields)
			if err != nil {
				t.Fatal(err)
			}
			want, err := CanonicalizeJSON([]byte(vec.Body))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("re-signed body differs\n got %s\nwant %s", got, want)
			}
			if strings.HasPrefix(vec.Name, "signed/") && string(got) != vec.Body {
				t.Fatalf("re-signed body is not Python's exact frame")
			}
		})
		n++
	}
	if n < 10 {
		t.Fatalf("only %d valid vectors", n)
	}
}

func TestValidateSignedBy(t *testing.T) {
	val := NewValidator(vectorsConfig(t, "testdata/pki"))
	var ack vector
	for _, v := range loadVectors(t, "vectors.jsonl") {
		if v.Name == "signed/gilmsg-ack" {
			ack = v
		}
	}
	env, err := ParseEnvelope([]byte(ack.Body))
	if err != nil {
		t.Fatal(err)
	}
	if err := val.ValidateSignedBy(env, "autocloud01.example.org"); err != nil {
		t.Fatalf("signed by its own CN: %v", err)
	}
	for _, cn := range []string{"bodhi-backend01.example.org", "autocloud01", ""} {
		if err := val.ValidateSignedBy(env, cn); ReasonOf(err) != ReasonPolicy {
			t.Errorf("signed by %q: err = %v, want a policy failure", cn, err)
		}
	}
}

// Every way of breaking a signed envelope's fields is an error, never a
// panic, and never valid.
func TestValidateGarbage(t *testing.T) {
	val := NewValidator(vectorsConfig(t, "testdata/pki"))
	good := loadVectors(t, "vectors.jsonl")[0]
	base := func() map[string]any {
		env, err := ParseEnvelope([]byte(good.Body))
		if err != nil {
			t.Fatal(err)
		}
		return env.Fields()
	}
	cert := base()[fieldCertificate].(string)
	sig := base()[fieldSignature].(string)
	mutations := map[string]func(m map[string]any){
		"certificate truncated":   func(m map[string]any) { m[fieldCertificate] = cert[:len(cert)/2] },
		"certificate bad padding": func(m map[string]any) { m[fieldCertificate] = cert[:len(cert)-3] },
		"certificate empty":       func(m map[string]any) { m[fieldCertificate] = "" },
		"certificate not base64":  func(m map[string]any) { m[fieldCertificate] = "!!!!" },
		"certificate DER garbage": func(m map[string]any) {
			m[fieldCertificate] = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
		},
		"signature truncated": func(m map[string]any) { m[fieldSignature] = sig[:40] },
		"signature empty":     func(m map[string]any) { m[fieldSignature] = "" },
		"signature null":      func(m map[string]any) { m[fieldSignature] = nil },
		"crypto null":         func(m map[string]any) { m[fieldCrypto] = nil },
		"crypto gpg":          func(m map[string]any) { m[fieldCrypto] = "gpg" },
		"no crypto no cert":   func(m map[string]any) { delete(m, fieldCrypto); delete(m, fieldCertificate) },
		"msg changed":         func(m map[string]any) { m[fieldMsg] = map[string]any{"log": "bye"} },
	}
	for _, key := range []string{fieldTopic, fieldMsgID, fieldUsername, fieldCrypto, fieldSignature, fieldCertificate, fieldTimestamp, fieldI} {
		for name, bad := range map[string]any{"number": json.Number("7"), "array": []any{}, "object": map[string]any{}, "bool": true, "float": 1.5, "huge": json.Number("123456789012345678901234567890")} {
			mutations[key+" as "+name] = func(m map[string]any) { m[key] = bad }
		}
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			m := base()
			mutate(m)
			body, err := MarshalCanonical(m)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := validateBody(val, body)
			if err == nil {
				// A number where an integer is expected is still a valid
				// message when it is what was signed; nothing here is.
				t.Fatalf("accepted as signed by %q", signer)
			}
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
		})
	}
	for _, body := range []string{"", "null", "[]", "1", `"x"`, "{", `{"topic":`, "\xff\xfe"} {
		if _, err := validateBody(val, []byte(body)); ReasonOf(err) != ReasonMalformed {
			t.Errorf("%q: err = %v, want malformed", body, err)
		}
	}
}

// copyPKI copies testdata/pki to a fresh directory the test may rewrite.
func copyPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("testdata/pki")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata/pki", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readPEMBlock(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return b.Bytes
}

// writeCRL signs a new CRL with the test CA revoking serials.
func writeCRL(t *testing.T, dir string, number int64, serials ...*big.Int) {
	t.Helper()
	ca, err := x509.ParseCertificate(readPEMBlock(t, filepath.Join(dir, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.Signer
	der := readPEMBlock(t, filepath.Join(dir, "ca.key"))
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		key = k
	} else if k8, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		key = k8.(crypto.Signer)
	} else {
		t.Fatal(err)
	}
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: entries,
	}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "crl.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	// Make the change visible to a stat even within one clock tick.
	future := time.Now().Add(time.Duration(number) * time.Second)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
}

// A rotated CRL takes effect without restarting: the cached chain result of
// a now-revoked certificate is dropped.
func TestValidateCRLRotation(t *testing.T) {
	dir := copyPKI(t)
	val := NewValidator(vectorsConfig(t, dir))
	signed := loadVectors(t, "vectors.jsonl")[0] // shell-app01
	if _, err := validateBody(val, []byte(signed.Body)); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	leaf, err := x509.ParseCertificate(readPEMBlock(t, filepath.Join(dir, "shell-app01.crt")))
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(t, dir, 5000, leaf.SerialNumber)
	val.trust.checkedAt.Store(0) // the next message looks at the files
	if _, err := validateBody(val, []byte(signed.Body)); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("after rotation: err = %v, want revoked", err)
	}
	writeCRL(t, dir, 5001)
	val.trust.checkedAt.Store(0)
	if _, err := validateBody(val, []byte(signed.Body)); err != nil {
		t.Fatalf("after un-revoking: %v", err)
	}
}

// A missing CA is a reason on every message, and once the file appears the
// next failure reloads it.
func TestValidateCAAppears(t *testing.T) {
	dir := copyPKI(t)
	caData, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "ca.crt"))
	val := NewValidator(vectorsConfig(t, dir))
	signed := loadVectors(t, "vectors.jsonl")[0]
	if _, err := validateBody(val, []byte(signed.Body)); ReasonOf(err) != ReasonCA {
		t.Fatalf("without CA: err = %v, want reason ca", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), caData, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := validateBody(val, []byte(signed.Body)); err != nil {
		t.Fatalf("after the CA appeared: %v", err)
	}
}

// ca_cert_location and crl_location may be https:// URLs.
func TestValidateHTTPSLocations(t *testing.T) {
	srv := httptest.NewTLSServer(http.FileServer(http.Dir("testdata/pki")))
	defer srv.Close()
	cfg := vectorsConfig(t, "testdata/pki")
	cfg.CACertLocation = srv.URL + "/ca.crt"
	cfg.CRLLocation = srv.URL + "/crl.pem"
	val := NewValidator(cfg)
	val.trust.client = srv.Client()
	for _, vec := range loadVectors(t, "vectors.jsonl") {
		signer, err := validateBody(val, []byte(vec.Body))
		if (err == nil) != vec.Valid || signer != vec.Signer {
			t.Errorf("%s: signer %q err %v, want valid=%v", vec.Name, signer, err, vec.Valid)
		}
	}

	cfg.CACertLocation = srv.URL + "/missing.crt"
	val = NewValidator(cfg)
	val.trust.client = srv.Client()
	if _, err := validateBody(val, []byte(loadVectors(t, "vectors.jsonl")[0].Body)); ReasonOf(err) != ReasonCA || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing CA URL: err = %v", err)
	}
}

// Once a certificate's chain is cached, validation does no further
// certificate work: the cache holds one entry per signer.
func TestValidateChainCache(t *testing.T) {
	val := NewValidator(vectorsConfig(t, "testdata/pki"))
	vecs := loadVectors(t, "vectors.jsonl")
	for range 3 {
		for _, v := range vecs {
			validateBody(val, []byte(v.Body))
		}
	}
	val.mu.RLock()
	n := len(val.cache)
	val.mu.RUnlock()
	signers := map[string]bool{}
	for _, v := range vecs {
		if env, err := ParseEnvelope([]byte(v.Body)); err == nil && env.Certificate != "" {
			signers[env.Certificate] = true
		}
	}
	if n != len(signers) {
		t.Fatalf("cache has %d entries, want one per distinct certificate (%d)", n, len(signers))
	}
}

func BenchmarkSign(b *testing.B) {
	signer, err := LoadSigner("testdata/pki", "shell-app01")
	if err != nil {
		b.Fatal(err)
	}
	env, err := ParseEnvelope([]byte(loadVectors(b, "vectors.jsonl")[0].Body))
	if err != nil {
		b.Fatal(err)
	}
	fields := env.Fields()
	b.ReportAllocs()
	for b.Loop() {
		if err := signer.Sign(fields); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	body := []byte(loadVectors(b, "vectors.jsonl")[0].Body)
	b.Run("cached-chain", func(b *testing.B) {
		val := NewValidator(vectorsConfig(b, "testdata/pki"))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := validateBody(val, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold-chain", func(b *testing.B) {
		val := NewValidator(vectorsConfig(b, "testdata/pki"))
		b.ReportAllocs()
		for b.Loop() {
			val.mu.Lock()
			clear(val.cache)
			val.mu.Unlock()
			if _, err := validateBody(val, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// decodeB64 decodes as Python's base64.b64decode does by default (its
// verdicts below): line breaks and other characters outside the alphabet
// are dropped, and the padding must then be right.
func TestDecodeB64LikePython(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" with ok false: Python raises
		ok   bool
	}{
		{"QUJD\n", "ABC", true},
		{"QU!JD", "ABC", true},
		{"Q U\r\nJD", "ABC", true},
		{"QUJ", "", false},
	} {
		got, err := decodeB64(tc.in)
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("decodeB64(%q) = %q, %v; Python gives %q (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
