package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchKeys are the numbers `gilmsg bench --json` promises, with its
// default of 3 recipients.
var benchKeys = []string{
	"raw_zmq_msgs_per_s", "unsigned_msgs_per_s", "signed_msgs_per_s",
	"raw_capped_zmq_msgs_per_s", "raw_cap_msgs", "unsigned_vs_raw_capped", "cpu_us_per_msg_raw_capped",
	"rsa_sign_per_s", "rsa_verify_per_s", "crypto_floor_ms",
	"reliable_p50_ms_1", "reliable_p99_ms_1", "reliable_p50_ms_3", "reliable_p99_ms_3",
	"concurrent_reliable_msgs_per_s", "cores", "peak_rss_mb",
	"rsa_sign_per_s_parallel", "rsa_verify_per_s_parallel", "crypto_floor_plus_rtt_ms", "concurrent_crypto_bound_msgs_per_s",
	"unsigned_vs_raw", "signed_vs_sign_bound", "reliable_p50_vs_raw_reliable", "concurrent_vs_crypto_bound",
	"raw_reliable_p50_ms", "reliable_p50_vs_floor_plus_rtt", "reliable_p50_vs_floor", "concurrent_vs_sign_bound",
	"allocs_per_msg", "heap_mb_at_tenth", "heap_mb_at_end",
	"cpu_us_per_msg_raw", "cpu_us_per_msg_unsigned", "cpu_us_per_msg_signed", "switches_per_msg_signed",
	"cpu_us_per_msg_reliable_1", "cpu_us_per_msg_concurrent",
	"openssl_sign_per_s", "openssl_verify_per_s", "openssl_sign_per_s_parallel", "openssl_verify_per_s_parallel",
	"signed_vs_openssl_sign", "reliable_p50_vs_openssl_floor", "concurrent_vs_openssl_bound",
	"stored_signed_msgs_per_s", "stored_signed_vs_signed",
	"gpg_sign_per_s_rsa", "gpg_verify_per_s_rsa", "gpg_sign_per_s_ed25519", "gpg_verify_per_s_ed25519",
}

// TestBenchJSON runs every phase with tiny sizes and checks the shape of
// the result, not the speed.
func TestBenchJSON(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	prof := filepath.Join(t.TempDir(), "bench.prof")
	res := runCLI(t, nil, "bench", "--quick", "--json", "--duration", "20ms",
		"--key-bits", "1024", "--mem-messages", "200", "--concurrency", "4",
		"--endpoints", "3,7", "--endpoints-burst", "100", "--cpuprofile", prof)
	if res.code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	out := lines(res.stdout)
	if len(out) < 2 {
		t.Fatalf("want a table and a JSON line, got:\n%s", res.stdout)
	}
	got := mustJSON(t, out[len(out)-1])
	for _, k := range benchKeys {
		v, ok := got[k].(float64)
		if !ok {
			t.Errorf("%s = %#v, want a number", k, got[k])
			continue
		}
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want positive and finite", k, v)
		}
	}
	for k, v := range got {
		if f, ok := v.(float64); !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			t.Errorf("%s = %#v, want a finite number >= 0", k, v)
		}
	}
	if floor := got["crypto_floor_ms"].(float64); !closeTo(floor, 2000/got["rsa_sign_per_s"].(float64)+2000/got["rsa_verify_per_s"].(float64)) {
		t.Errorf("crypto_floor_ms %v is not 2 signs + 2 verifies", floor)
	}
	num := func(k string) float64 { f, _ := got[k].(float64); return f }
	if b := num("crypto_floor_plus_rtt_ms"); !closeTo(b, num("crypto_floor_ms")+num("raw_zmq_rtt_p50_ms")) {
		t.Errorf("crypto_floor_plus_rtt_ms %v is not the floor + the raw round trip's p50", b)
	}
	if b := num("concurrent_crypto_bound_msgs_per_s"); !closeTo(b, 1/(2/num("rsa_sign_per_s_parallel")+2/num("rsa_verify_per_s_parallel"))) {
		t.Errorf("concurrent_crypto_bound_msgs_per_s %v is not 2 signs + 2 verifies at the parallel rates", b)
	}
	if r := num("reliable_p50_vs_openssl_floor"); !closeTo(r, num("reliable_p50_ms_1")/(2000/num("openssl_sign_per_s")+2000/num("openssl_verify_per_s")+num("raw_zmq_rtt_p50_ms"))) {
		t.Errorf("reliable_p50_vs_openssl_floor %v is not p50 over 2 signs + 2 verifies at libcrypto's rates + the raw round trip", r)
	}
	if r := num("concurrent_vs_openssl_bound"); !closeTo(r, num("concurrent_reliable_msgs_per_s")*(2/num("openssl_sign_per_s_parallel")+2/num("openssl_verify_per_s_parallel"))) {
		t.Errorf("concurrent_vs_openssl_bound %v is not the rate over 2 signs + 2 verifies at libcrypto's parallel rates", r)
	}
	if r := num("unsigned_vs_raw_capped"); !closeTo(r, num("unsigned_msgs_per_s")/num("raw_capped_zmq_msgs_per_s")) {
		t.Errorf("unsigned_vs_raw_capped %v is not the rate over its bound", r)
	}
	if c := num("raw_cap_msgs"); c != 128 {
		t.Errorf("raw_cap_msgs = %v, want the bus's cap at the default max_message_size, 128", c)
	}
	if r := num("reliable_p50_vs_raw_reliable"); !closeTo(r, num("reliable_p50_ms_1")/num("raw_reliable_p50_ms")) {
		t.Errorf("reliable_p50_vs_raw_reliable %v is not p50 over its bound", r)
	}
	if r := num("concurrent_vs_crypto_bound"); !closeTo(r, num("concurrent_reliable_msgs_per_s")/num("concurrent_crypto_bound_msgs_per_s")) {
		t.Errorf("concurrent_vs_crypto_bound %v is not the rate over its bound", r)
	}
	for _, want := range []string{"raw ZeroMQ PUB→SUB", "raw ZeroMQ PUB→SUB, capped as the bus", "publish→tail, signed+validated", "reliable, 3 recipients", "peak RSS"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, res.stdout)
		}
	}
	for _, k := range []string{"endpoints_msgs_per_s_3", "endpoints_cpu_us_per_msg_7", "endpoints_threads_7", "stored_msgs_per_s"} {
		if v, ok := got[k].(float64); !ok || !(v > 0) {
			t.Errorf("%s = %#v, want a positive number", k, got[k])
		}
	}
	if !strings.Contains(res.stderr, "bench [15/15] ") {
		t.Errorf("no progress on stderr:\n%s", res.stderr)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("temporary files left behind: %v %v", left, err)
	}
	// The profile's string table holds the label key once a labelled
	// sample was taken; a run of a few CPU seconds takes hundreds.
	if text := gunzipFile(t, prof); !bytes.Contains(text, []byte("phase")) {
		t.Errorf("the CPU profile has no phase labels (%d bytes)", len(text))
	}
}

func gunzipFile(t *testing.T, name string) []byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-3*math.Max(math.Abs(a), math.Abs(b)) }

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"zero duration", []string{"--duration", "0s"}, "--duration"},
		{"one recipient", []string{"--recipients", "1"}, "--recipients"},
		{"too many recipients", []string{"--recipients", "11"}, "--recipients"},
		{"no goroutines", []string{"--concurrency", "0"}, "--concurrency"},
		{"negative endpoints", []string{"--endpoints", "50,-1"}, "--endpoints"},
		{"an argument", []string{"now"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, nil, append([]string{"bench"}, tc.args...)...)
			if res.code != exitUsage || !strings.Contains(res.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", res.code, res.stderr, exitUsage, tc.want)
			}
		})
	}
}
