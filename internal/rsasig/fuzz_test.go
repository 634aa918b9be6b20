package rsasig

import (
	"bytes"
	"crypto/rsa"
	"testing"
)

// FuzzLibMatchesCryptoRSA: for any text, libcrypto signs to crypto/rsa's
// bytes, and both give the same verdict on any signature, whether a good one
// altered at one byte or bytes the fuzzer made up.
func FuzzLibMatchesCryptoRSA(f *testing.F) {
	k := readKey(f, "shell-app01")
	needLib(f, k)
	pub := k.goKey.Public().(*rsa.PublicKey)
	for _, v := range readVectors(f) {
		f.Add(v.text, v.sig, uint16(0), byte(0))
	}
	f.Add([]byte{}, []byte{}, uint16(3), byte(1))
	f.Fuzz(func(t *testing.T, text, junk []byte, at uint16, xor byte) {
		sig, err := k.lib.sign(text)
		if err != nil {
			t.Fatal(err)
		}
		want, err := signGo(k.goKey, text)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, want) {
			t.Fatalf("signatures differ for %q", text)
		}
		altered := bytes.Clone(sig)
		altered[int(at)%len(altered)] ^= xor
		for _, s := range [][]byte{sig, altered, junk} {
			libErr := k.pub.VerifySHA1(text, s)
			goErr := verifyGo(pub, text, s)
			if (libErr == nil) != (goErr == nil) {
				t.Fatalf("libcrypto says %v, crypto/rsa %v, on %x", libErr, goErr, s)
			}
		}
	})
}
