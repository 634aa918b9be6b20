package rsasig

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const testdata = "../../testdata"

func readKey(t testing.TB, name string) *PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "pki", name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s.key: no PEM", name)
	}
	var k *rsa.PrivateKey
	if k, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
		k8, err8 := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err8 != nil {
			t.Fatalf("%s.key: %v", name, err8)
		}
		k = k8.(*rsa.PrivateKey)
	}
	return NewPrivateKey(k)
}

// pythonVector is what a line of testdata/vectors.jsonl (made and judged by
// Python fedmsg) says of a signature.
type pythonVector struct {
	name, signer string
	text, sig    []byte
	pub          *rsa.PublicKey
}

func readVectors(t testing.TB) []pythonVector {
	t.Helper()
	f, err := os.Open(filepath.Join(testdata, "vectors.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []pythonVector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Name, Body, Signer, Signed_text string }
		var body struct{ Signature, Certificate string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(line.Body), &body); err != nil || body.Signature == "" {
			continue // unsigned, or not JSON on purpose
		}
		v := pythonVector{name: line.Name, signer: line.Signer, text: []byte(line.Signed_text)}
		if v.sig, err = base64.StdEncoding.DecodeString(body.Signature); err != nil {
			t.Fatalf("%s: signature: %v", line.Name, err)
		}
		if certPEM, err := base64.StdEncoding.DecodeString(body.Certificate); err == nil {
			if b, _ := pem.Decode(certPEM); b != nil {
				if c, err := x509.ParseCertificate(b.Bytes); err == nil {
					v.pub, _ = c.PublicKey.(*rsa.PublicKey)
				}
			}
		}
		vs = append(vs, v)
	}
	return vs
}

// needLib skips where this build has no libcrypto to compare with.
func needLib(t testing.TB, k *PrivateKey) {
	t.Helper()
	if libVersion() == "" {
		t.Skip("pure-Go build: crypto/rsa alone")
	}
	if k.lib == nil || k.pub.lib == nil {
		t.Fatalf("libcrypto (%s) did not take the key", libVersion())
	}
}

// TestPythonSignaturesBothBackends holds both backends to the signatures
// Python fedmsg made: signing the text Python signed gives Python's bytes,
// and both backends judge every signature of the file alike.
func TestPythonSignaturesBothBackends(t *testing.T) {
	keys := map[string]*PrivateKey{}
	signedByPython := 0
	for _, v := range readVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			if v.signer != "" {
				name, _, _ := strings.Cut(v.signer, ".")
				k := keys[name]
				if k == nil {
					k = readKey(t, name)
					keys[name] = k
				}
				got, err := k.SignSHA1(v.text)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, v.sig) {
					t.Errorf("%s signature differs from Python's", Backend())
				}
				if goSig, _ := signGo(k.goKey, v.text); !bytes.Equal(goSig, v.sig) {
					t.Errorf("crypto/rsa signature differs from Python's")
				}
				signedByPython++
			}
			if v.pub == nil {
				return
			}
			pk := NewPublicKey(v.pub)
			libErr := pk.VerifySHA1(v.text, v.sig)
			goErr := verifyGo(v.pub, v.text, v.sig)
			if (libErr == nil) != (goErr == nil) {
				t.Errorf("%s says %v, crypto/rsa says %v", Backend(), libErr, goErr)
			}
			if v.signer != "" && libErr != nil {
				t.Errorf("a signature Python made and accepted: %v", libErr)
			}
		})
	}
	if signedByPython < 10 {
		t.Fatalf("only %d vectors signed by Python", signedByPython)
	}
}

// TestLibMatchesCryptoRSA compares libcrypto with crypto/rsa on texts of
// every length up to a few blocks, and on signatures broken every way.
func TestLibMatchesCryptoRSA(t *testing.T) {
	k := readKey(t, "shell-app01")
	needLib(t, k)
	other := readKey(t, "bodhi-backend01")
	for n := 0; n < 300; n += 7 {
		text := bytes.Repeat([]byte{byte(n)}, n)
		lib, err := k.lib.sign(text)
		if err != nil {
			t.Fatal(err)
		}
		goSig, err := signGo(k.goKey, text)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(lib, goSig) {
			t.Fatalf("len %d: libcrypto and crypto/rsa signatures differ", n)
		}
		wrongKey, _ := other.SignSHA1(text)
		for _, bad := range [][]byte{nil, {}, lib[:len(lib)-1], append(lib[:len(lib):len(lib)], 0), flip(lib, 0), flip(lib, 100), wrongKey, make([]byte, len(lib)), bytes.Repeat([]byte{0xff}, len(lib))} {
			libErr := k.pub.VerifySHA1(text, bad)
			if libErr == nil || verifyGo(k.goKey.Public().(*rsa.PublicKey), text, bad) == nil {
				t.Fatalf("len %d: a broken signature passed (libcrypto: %v)", n, libErr)
			}
			if !errors.Is(libErr, ErrVerification) {
				t.Fatalf("len %d: %v is not ErrVerification", n, libErr)
			}
		}
		if err := k.pub.VerifySHA1(text, lib); err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if k.pub.VerifySHA1(append(text, 'x'), lib) == nil {
			t.Fatalf("len %d: signature passed for another text", n)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// TestConcurrentUse signs and verifies with one key from many goroutines
// (run it with -race): the contexts a key keeps go to one call at a time.
func TestConcurrentUse(t *testing.T) {
	k := readKey(t, "autocloud01")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				text := []byte{byte(g), byte(i)}
				sig, err := k.SignSHA1(text)
				if err == nil {
					err = k.Public().VerifySHA1(text, sig)
				}
				if want, _ := signGo(k.goKey, text); err == nil && !bytes.Equal(sig, want) {
					err = errors.New("signature differs from crypto/rsa's")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestKeysLeftToCryptoRSA: keys crypto/rsa judges on its own rules stay
// with it, so its verdict on them does not change.
func TestKeysLeftToCryptoRSA(t *testing.T) {
	k := readKey(t, "shell-app01").goKey
	evenE := &rsa.PublicKey{N: k.N, E: 65536}
	if NewPublicKey(evenE).lib != nil {
		t.Error("a key with an even exponent went to libcrypto")
	}
	if err := NewPublicKey(evenE).VerifySHA1([]byte("x"), make([]byte, k.Size())); err == nil {
		t.Error("an even exponent verified")
	}
}

// SignSHA1Each gives each text the signature SignSHA1 gives it (and
// crypto/rsa), in order, on whichever backend signs: texts of every
// length up to a few hundred bytes, an empty list, one text.
func TestSignEachMatchesSignOne(t *testing.T) {
	k := readKey(t, "shell-app01")
	for _, n := range []int{0, 1, 2, 17} {
		texts := make([][]byte, n)
		for i := range texts {
			texts[i] = bytes.Repeat([]byte{byte(i)}, 37*i)
		}
		sigs, err := k.SignSHA1Each(texts)
		if err != nil || len(sigs) != n {
			t.Fatalf("%d texts: %d signatures, %v", n, len(sigs), err)
		}
		for i, text := range texts {
			want, err := signGo(k.goKey, text)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sigs[i], want) {
				t.Fatalf("%d texts: signature %d differs from crypto/rsa's", n, i)
			}
			if cap(sigs[i]) != len(sigs[i]) {
				t.Fatalf("%d texts: signature %d can grow into the next", n, i)
			}
		}
	}
}
