package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// rsaPhase measures the floor: RSA PKCS#1 v1.5 over SHA-1, as the library
// signs and verifies, with the bench's key, in one goroutine. It runs first
// and again last; the floor is the faster of the two, and a large spread
// says that something else was using the CPU.
func (e *benchEnv) rsaPhase(ctx context.Context, r *benchResults) error {
	if e.rsaKey == nil {
		key, err := readPKCS8Key(filepath.Join(e.pki.Dir, benchPublisher+".key"))
		if err != nil {
			return err
		}
		if e.rsaText, err = e.signedText(); err != nil {
			return err
		}
		e.rsaKey = key
	}
	key, text := e.rsaKey, e.rsaText
	var sig []byte
	sign, err := ratePerSecond(ctx, e.o.duration/2, func() (err error) {
		sig, err = rsaSign(key, text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := ratePerSecond(ctx, e.o.duration/2, func() error { return rsaVerify(key, text, sig) })
	if err != nil {
		return err
	}
	r.signRuns = append(r.signRuns, sign)
	r.verifyRuns = append(r.verifyRuns, verify)
	r.rsaSign, r.rsaVerify = slices.Max(r.signRuns), slices.Max(r.verifyRuns)
	r.floorMS = 2*1000/r.rsaSign + 2*1000/r.rsaVerify
	return e.sslPhase(ctx, r)
}

// parallelRSA measures the sign and verify rates of one goroutine per core
// at once, for about d each: what the machine can do in parallel now. The
// concurrent phase runs it just before and just after itself, so that its
// bound comes from the same minute (the faster run counts).
func (e *benchEnv) parallelRSA(ctx context.Context, r *benchResults, d time.Duration) error {
	key, text := e.rsaKey, e.rsaText
	sig, err := rsaSign(key, text)
	if err != nil {
		return err
	}
	sign, err := parallelRate(ctx, d, r.cores, func() error {
		_, err := rsaSign(key, text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := parallelRate(ctx, d/2, r.cores, func() error { return rsaVerify(key, text, sig) })
	if err != nil {
		return err
	}
	r.parSignRuns = append(r.parSignRuns, sign)
	r.parVerifyRuns = append(r.parVerifyRuns, verify)
	r.parSign, r.parVerify = slices.Max(r.parSignRuns), slices.Max(r.parVerifyRuns)
	return e.sslParallel(ctx, r)
}

// rsaSign and rsaVerify are the floor's operations: RSA PKCS#1 v1.5 over
// SHA-1, as the library signs and verifies.
func rsaSign(key *rsa.PrivateKey, text []byte) ([]byte, error) {
	sum := sha1.Sum(text)
	return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:])
}

func rsaVerify(key *rsa.PrivateKey, text, sig []byte) error {
	sum := sha1.Sum(text)
	return rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], sig)
}

func readPKCS8Key(path string) (*rsa.PrivateKey, error) {
	keyPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: key is %T, not RSA", path, k)
	}
	key.Precompute()
	return key, nil
}

// ratePerSecond calls op for about d (at least benchMinSamples times).
func ratePerSecond(ctx context.Context, d time.Duration, op func() error) (float64, error) {
	start := time.Now()
	n := 0
	for ; n < benchMinSamples || time.Since(start) < d; n++ {
		if err := op(); err != nil {
			return 0, err
		}
		if n%64 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// parallelRate is ratePerSecond over n goroutines calling op at once: the
// calls of all of them per second.
func parallelRate(ctx context.Context, d time.Duration, n int, op func() error) (float64, error) {
	rates := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rates[i], errs[i] = ratePerSecond(ctx, d, op)
		}()
	}
	wg.Wait()
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return sum, errors.Join(errs...)
}
