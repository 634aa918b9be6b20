package gilmsg

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each CRL of testdata/crl-v1 gives, for every vector, the verdict Python
// fedmsg gave with it (testdata/crl-v1/verdicts.json).
func TestValidateVersion1CRLs(t *testing.T) {
	data, err := os.ReadFile("testdata/crl-v1/verdicts.json")
	if err != nil {
		t.Fatal(err)
	}
	var verdicts map[string]map[string]bool
	if err := json.Unmarshal(data, &verdicts); err != nil {
		t.Fatal(err)
	}
	vectors := loadVectors(t, "vectors.jsonl")
	for crlName, want := range verdicts {
		t.Run(crlName, func(t *testing.T) {
			cfg := vectorsConfig(t, "testdata/pki")
			if crlName != "crl.pem" {
				cfg.CRLLocation = filepath.Join("testdata/crl-v1", crlName)
			}
			val := NewValidator(cfg)
			if len(want) != len(vectors) {
				t.Fatalf("%d verdicts for %d vectors", len(want), len(vectors))
			}
			for _, vec := range vectors {
				_, err := validateBody(val, []byte(vec.Body))
				if (err == nil) != want[vec.Name] {
					t.Errorf("%s: valid = %v (%v), Python says %v", vec.Name, err == nil, err, want[vec.Name])
				}
				if vec.Name == "invalid/revoked-cert" && crlName == "crl-v1.pem" && ReasonOf(err) != ReasonRevoked {
					t.Errorf("revoked01 under the v1 CRL: %v, want reason %q", err, ReasonRevoked)
				}
			}
		})
	}
}

// What is wrong with a v1 CRL is said: expired, or not signed by the CA.
func TestVersion1CRLErrors(t *testing.T) {
	vectors := loadVectors(t, "vectors.jsonl")
	var body string
	for _, v := range vectors {
		if v.Name == "signed/ascii" {
			body = v.Body
		}
	}
	for _, tc := range []struct{ file, want string }{
		{"crl-v1-expired.pem", "crl-v1-expired.pem: expired at 2021-01-01"},
		{"crl-v1-rogue.pem", "crl-v1-rogue.pem: signature"},
		{"crl-v1-badsig.pem", "crl-v1-badsig.pem: signature"},
	} {
		cfg := vectorsConfig(t, "testdata/pki")
		cfg.CRLLocation = filepath.Join("testdata/crl-v1", tc.file)
		_, err := validateBody(NewValidator(cfg), []byte(body))
		if ReasonOf(err) != ReasonCA || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want reason %q mentioning %q", tc.file, err, ReasonCA, tc.want)
		}
		// A ValidationError around a TrustError: one prefix.
		if err != nil && strings.Count(err.Error(), "gilmsg:") != 1 {
			t.Errorf("%s: %q, want one gilmsg: prefix", tc.file, err)
		}
	}
}

// parseCRL reads a v1 CRL's fields and keeps the bytes the CA signed; it
// refuses what is not a CRL, and a v1 CRL carrying extensions.
func TestParseCRLVersion1(t *testing.T) {
	data, err := os.ReadFile("testdata/crl-v1/crl-v1.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	rl, err := parseCRL(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rl.RevokedCertificateEntries); rl.Issuer.CommonName != "Test Bus CA" || n != 1 ||
		rl.RevokedCertificateEntries[0].SerialNumber.Int64() != 0x1003 || rl.NextUpdate.Year() != 2036 {
		t.Errorf("parsed issuer %q, %d entries, next update %v; want Test Bus CA, serial 0x1003, 2036", rl.Issuer.CommonName, n, rl.NextUpdate)
	}
	if string(rl.Raw) != string(block.Bytes) {
		t.Error("Raw is not the CRL as read")
	}
	for _, bad := range [][]byte{nil, []byte("junk"), block.Bytes[:len(block.Bytes)-1], append(append([]byte{}, block.Bytes...), 0)} {
		if _, err := parseCRL(bad); err == nil {
			t.Errorf("parseCRL(%d bytes of junk) succeeded", len(bad))
		}
	}
}

func FuzzParseCRL(f *testing.F) {
	for _, name := range []string{"testdata/crl-v1/crl-v1.pem", "testdata/pki/crl.pem"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		block, _ := pem.Decode(data)
		f.Add(block.Bytes)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		rl, err := parseCRL(der)
		if err == nil && rl == nil {
			t.Fatal("nil CRL without an error")
		}
	})
}

// A certificate that validated, and so sits in the chain cache, stops
// validating once its validity period ends: the cache keeps the chain's
// verdict, never the clock's.
func TestCachedCertificateExpires(t *testing.T) {
	cfg := vectorsConfig(t, "testdata/pki")
	cfg.CRLLocation = "" // a CRL has its own expiry; this is about the certificate's
	val := NewValidator(cfg)
	var body string
	for _, v := range loadVectors(t, "vectors.jsonl") {
		if v.Name == "signed/ascii" {
			body = v.Body
		}
	}
	env, err := ParseEnvelope([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	cert, _, verr := parseCertField(env.Certificate)
	if verr != nil {
		t.Fatal(verr)
	}
	clock := cert.NotAfter.Add(-time.Hour)
	val.now = func() time.Time { return clock }
	if _, err := val.Validate(env); err != nil {
		t.Fatalf("an hour before it expires: %v", err)
	}
	if res, ok := val.cached(env.Certificate); !ok || res.err != nil {
		t.Fatalf("the valid certificate is not cached as valid (cached %v)", ok)
	}
	clock = cert.NotAfter.Add(time.Second)
	_, err = val.Validate(env)
	if ReasonOf(err) != ReasonExpired {
		t.Fatalf("a second after it expired: %v, want reason %q", err, ReasonExpired)
	}
	clock = cert.NotBefore.Add(-time.Second)
	if _, err = val.Validate(env); ReasonOf(err) != ReasonNotYetValid {
		t.Fatalf("a second before it is valid: %v, want reason %q", err, ReasonNotYetValid)
	}
}
