package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/gilmsg/gilmsg-go/internal/rsasig"
)

// The bounds at libcrypto's speed (issue 25): the library signs and
// verifies through libcrypto, so its bounds are libcrypto's own rates,
// measured here with the same calls and key, without the bus around them.
// The crypto/rsa rates and ratios stay beside them: they show how much of
// a gain is the backend's. In a pure-Go build (gilmsg_purego) both
// measure crypto/rsa.

// sslRates are libcrypto's rates of one run.
type sslRates struct {
	sign, verify           float64 // one goroutine, the best run
	signRuns, verifyRuns   []float64
	parSign, parVerify     float64 // one goroutine per core at once
	parSignRuns, parVerRun []float64
}

// sslKey is the bench key as the library holds it.
func (e *benchEnv) sslKey() *rsasig.PrivateKey {
	if e.ssl == nil {
		e.ssl = rsasig.NewPrivateKey(e.rsaKey)
	}
	return e.ssl
}

// sslPhase measures libcrypto's one-goroutine rates; it runs beside each
// crypto/rsa floor measurement (first and last), the best run counts.
func (e *benchEnv) sslPhase(ctx context.Context, r *benchResults) error {
	key, text := e.sslKey(), e.rsaText
	sig, err := key.SignSHA1(text)
	if err != nil {
		return err
	}
	sign, err := ratePerSecond(ctx, e.o.duration/2, func() error {
		_, err := key.SignSHA1(text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := ratePerSecond(ctx, e.o.duration/2, func() error { return key.Public().VerifySHA1(text, sig) })
	if err != nil {
		return err
	}
	s := &r.ssl
	s.signRuns, s.verifyRuns = append(s.signRuns, sign), append(s.verifyRuns, verify)
	s.sign, s.verify = slices.Max(s.signRuns), slices.Max(s.verifyRuns)
	return nil
}

// sslParallel is parallelRSA at libcrypto's speed.
func (e *benchEnv) sslParallel(ctx context.Context, r *benchResults) error {
	key, text := e.sslKey(), e.rsaText
	sig, err := key.SignSHA1(text)
	if err != nil {
		return err
	}
	d := e.o.duration / 4
	sign, err := parallelRate(ctx, d, r.cores, func() error {
		_, err := key.SignSHA1(text)
		return err
	})
	if err != nil {
		return err
	}
	verify, err := parallelRate(ctx, d/2, r.cores, func() error { return key.Public().VerifySHA1(text, sig) })
	if err != nil {
		return err
	}
	s := &r.ssl
	s.parSignRuns, s.parVerRun = append(s.parSignRuns, sign), append(s.parVerRun, verify)
	s.parSign, s.parVerify = slices.Max(s.parSignRuns), slices.Max(s.parVerRun)
	return nil
}

// The ratios of the table, against libcrypto's bounds.

// sslFloorPlusRTTMS is what a reliable publish to one recipient cannot go
// under: 2 signs and 2 verifies at libcrypto's one-core speed and a raw
// ZeroMQ round trip.
func (r *benchResults) sslFloorPlusRTTMS() float64 {
	return 2*1000/r.ssl.sign + 2*1000/r.ssl.verify + r.rawRTT.p50
}

// sslCryptoBound is cryptoBound at libcrypto's parallel rates.
func (r *benchResults) sslCryptoBound() float64 {
	return 1 / (2/r.ssl.parSign + 2/r.ssl.parVerify)
}

func (r *benchResults) sslNumbers() []benchKV {
	return []benchKV{
		{"openssl_sign_per_s", r.ssl.sign},
		{"openssl_verify_per_s", r.ssl.verify},
		{"openssl_sign_per_s_parallel", r.ssl.parSign},
		{"openssl_verify_per_s_parallel", r.ssl.parVerify},
		{"openssl_floor_plus_rtt_ms", r.sslFloorPlusRTTMS()},
		{"openssl_concurrent_bound_msgs_per_s", r.sslCryptoBound()},
		{"signed_vs_openssl_sign", r.signed / r.ssl.sign},
		{"reliable_p50_vs_openssl_floor", r.lat1.p50 / r.sslFloorPlusRTTMS()},
		{"concurrent_vs_openssl_bound", r.concurrent / r.sslCryptoBound()},
		{"stored_signed_msgs_per_s", r.storedSigned},
		{"stored_signed_vs_signed", r.storedSigned / r.signed},
	}
}

func (r *benchResults) sslRows(row func(...string), check func(bool, string, ...any) string) {
	row("libcrypto: "+rsasig.Backend(), "", "the library's RSA; the rows below at its speed")
	row("  sign, 1 goroutine", fmt.Sprintf("%.0f /s", r.ssl.sign), fmt.Sprintf("%.2f × crypto/rsa", r.ssl.sign/r.rsaSign))
	row("  verify, 1 goroutine", fmt.Sprintf("%.0f /s", r.ssl.verify), fmt.Sprintf("%.2f × crypto/rsa", r.ssl.verify/r.rsaVerify))
	row(fmt.Sprintf("  sign, verify, %d goroutines", r.cores), fmt.Sprintf("%.0f /s, %.0f /s", r.ssl.parSign, r.ssl.parVerify), "")
	row("  signed vs libcrypto sign", fmt.Sprintf("%.0f msg/s", r.signed),
		check(r.signed/r.ssl.sign >= 0.8, "%.2f × (≥ 0.8)", r.signed/r.ssl.sign))
	row("  reliable p50 vs floor + rtt", fmt.Sprintf("%.2f ms", r.sslFloorPlusRTTMS()),
		check(r.lat1.p50/r.sslFloorPlusRTTMS() <= 1.5, "%.2f × (≤ 1.5)", r.lat1.p50/r.sslFloorPlusRTTMS()))
	row("  concurrent vs 2-core bound", fmt.Sprintf("%.0f msg/s", r.sslCryptoBound()),
		check(r.concurrent/r.sslCryptoBound() >= 0.7, "%.2f × (≥ 0.7)", r.concurrent/r.sslCryptoBound()))
	row(fmt.Sprintf("publish→tail, signed, stored, %d goroutines", benchStoreWriters), fmt.Sprintf("%.0f msg/s", r.storedSigned),
		check(r.storedSigned/r.signed >= 0.8, "%.2f × signed (≥ 0.8)", r.storedSigned/r.signed))
}
