package rsasig

import (
	"crypto/rsa"
	"testing"
)

// The text is a typical signed fedmsg canonical text (200 bytes).
var benchText = make([]byte, 200)

func BenchmarkSign(b *testing.B) {
	k := readKey(b, "shell-app01")
	b.Run("backend=crypto-rsa", func(b *testing.B) {
		for b.Loop() {
			if _, err := signGo(k.goKey, benchText); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backend=openssl", func(b *testing.B) {
		needLib(b, k)
		for b.Loop() {
			if _, err := k.lib.sign(benchText); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := readKey(b, "shell-app01")
	sig, err := k.SignSHA1(benchText)
	if err != nil {
		b.Fatal(err)
	}
	pub := k.goKey.Public().(*rsa.PublicKey)
	b.Run("backend=crypto-rsa", func(b *testing.B) {
		for b.Loop() {
			if err := verifyGo(pub, benchText, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backend=openssl", func(b *testing.B) {
		needLib(b, k)
		for b.Loop() {
			if err := k.pub.lib.verify(benchText, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
