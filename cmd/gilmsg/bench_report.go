package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// peakRSSMB is the process's peak resident set (VmHWM), or, where /proc
// is not there, what the Go runtime got from the OS.
func peakRSSMB() float64 {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err == nil {
					return kb / 1024
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys) / (1 << 20)
}

// signSpread is how far apart the two sign-rate runs were, relative to the
// faster: a few percent is noise, more means a disturbed run.
func (r *benchResults) signSpread() float64 {
	return 1 - slices.Min(r.signRuns)/slices.Max(r.signRuns)
}

// The ratios the targets are set on.

func (r *benchResults) unsignedVsRaw() float64 { return r.unsigned / r.raw }

// unsignedVsRawCapped refines unsignedVsRaw's bound, measured in the same
// run: raw ZeroMQ with the queues the bus must have (rawCappedPhase).
// unsignedVsRaw stays the headline, with its target.
func (r *benchResults) unsignedVsRawCapped() float64 { return r.unsigned / r.rawCapped }
func (r *benchResults) signedVsSignBound() float64   { return r.signed / r.rsaSign }
func (r *benchResults) p50VsFloor() float64          { return r.lat1.p50 / r.floorMS }

// The first round's bounds for latency and concurrency, refined below by
// what they left out and the run measures: kept, reported beside them.
func (r *benchResults) signBound() float64             { return float64(r.cores) * r.rsaSign / 2 }
func (r *benchResults) concurrentVsSignBound() float64 { return r.concurrent / r.signBound() }

// The reliable publish's bound is its own work done with the primitives
// alone (rawReliable): the floor counts the cryptography only, and floor +
// raw round trip adds a transport measured hot, message after message,
// while each hop of a reliable publish follows a signature's worth of
// computation, after which waking the other side costs more.
func (r *benchResults) p50VsRawReliable() float64 { return r.lat1.p50 / r.rawReliable.p50 }
func (r *benchResults) floorPlusRTTMS() float64   { return r.floorMS + r.rawRTT.p50 }
func (r *benchResults) p50VsFloorPlusRTT() float64 {
	return r.lat1.p50 / r.floorPlusRTTMS()
}

// cryptoBound is the concurrent phase's bound: the messages per second
// whose cryptography, two signs and two verifies each, the cores can do
// at the parallel rates measured in this run. The first round's
// cores × sign rate ÷ 2 assumed that the cores sign as fast together as
// one alone and left the verifies out.
func (r *benchResults) cryptoBound() float64 {
	return 1 / (2/r.parSign + 2/r.parVerify)
}
func (r *benchResults) concurrentVsCryptoBound() float64 { return r.concurrent / r.cryptoBound() }

// benchKV is one number of the JSON line.
type benchKV struct {
	key string
	val float64
}

func (r *benchResults) numbers() []benchKV {
	n := strconv.Itoa(r.recipients)
	kvs := []benchKV{
		{"raw_zmq_msgs_per_s", r.raw},
		{"raw_capped_zmq_msgs_per_s", r.rawCapped},
		{"raw_cap_msgs", float64(r.rawCap)},
		{"unsigned_vs_raw_capped", r.unsignedVsRawCapped()},
		{"unsigned_msgs_per_s", r.unsigned},
		{"stored_msgs_per_s", r.stored},
		{"stored_vs_unsigned", r.stored / r.unsigned},
		{"signed_msgs_per_s", r.signed},
		{"rsa_sign_per_s", r.rsaSign},
		{"rsa_verify_per_s", r.rsaVerify},
		{"rsa_sign_spread", r.signSpread()},
		{"rsa_sign_per_s_parallel", r.parSign},
		{"rsa_verify_per_s_parallel", r.parVerify},
		{"crypto_floor_ms", r.floorMS},
		{"crypto_floor_plus_rtt_ms", r.floorPlusRTTMS()},
		{"concurrent_crypto_bound_msgs_per_s", r.cryptoBound()},
		{"reliable_p50_ms_1", r.lat1.p50},
		{"reliable_p99_ms_1", r.lat1.p99},
		{"reliable_p50_ms_" + n, r.latN.p50},
		{"reliable_p99_ms_" + n, r.latN.p99},
		{"concurrent_reliable_msgs_per_s", r.concurrent},
		{"cores", float64(r.cores)},
		{"peak_rss_mb", r.peakRSSMB},
		{"unsigned_vs_raw", r.unsignedVsRaw()},
		{"signed_vs_sign_bound", r.signedVsSignBound()},
		{"reliable_p50_vs_raw_reliable", r.p50VsRawReliable()},
		{"concurrent_vs_crypto_bound", r.concurrentVsCryptoBound()},
		{"raw_reliable_p50_ms", r.rawReliable.p50},
		{"raw_reliable_p99_ms", r.rawReliable.p99},
		{"reliable_p50_vs_floor_plus_rtt", r.p50VsFloorPlusRTT()},
		{"reliable_p50_vs_floor", r.p50VsFloor()},
		{"concurrent_vs_sign_bound", r.concurrentVsSignBound()},
		{"reliable_p99_vs_p50_1", r.lat1.p99 / r.lat1.p50},
		{"raw_zmq_rtt_p50_ms", r.rawRTT.p50},
		{"raw_zmq_rtt_p99_ms", r.rawRTT.p99},
		{"reliable_max_ms_1", r.lat1.max},
		{"reliable_max_ms_" + n, r.latN.max},
		{"allocs_per_msg", r.allocsUnsigned},
		{"allocs_per_msg_signed", r.allocsSigned},
		{"allocs_per_reliable_publish", r.allocsReliable},
		{"heap_mb_at_tenth", r.heapEarlyMB},
		{"heap_mb_at_end", r.heapEndMB},
		{"mem_messages", float64(r.memMessages)},
		{"concurrent_resends", float64(r.concurrentResends)},
		{"concurrency", float64(r.concurrency)},
		{"recipients", float64(r.recipients)},
		{"key_bits", float64(r.keyBits)},
		{"body_bytes", float64(r.bodyBytes)},
		{"signed_body_bytes", float64(r.signedBodyBytes)},
		{"cpu_us_per_msg_raw", r.cpuRaw},
		{"cpu_us_per_msg_raw_capped", r.cpuRawCapped},
		{"cpu_us_per_msg_unsigned", r.cpuUnsigned},
		{"cpu_us_per_msg_signed", r.cpuSigned},
		{"switches_per_msg_signed", r.switchesSigned},
		{"cpu_us_per_msg_reliable_1", r.lat1.cpuUS},
		{"cpu_us_per_msg_reliable_" + n, r.latN.cpuUS},
		{"cpu_us_per_msg_concurrent", r.cpuConcurrent},
	}
	for _, ep := range r.endpoints {
		n := strconv.Itoa(ep.n)
		kvs = append(kvs,
			benchKV{"endpoints_msgs_per_s_" + n, ep.rate},
			benchKV{"endpoints_cpu_us_per_msg_" + n, ep.cpuUSPerMs},
			benchKV{"endpoints_threads_" + n, float64(ep.threads)})
	}
	return kvs
}

func (r *benchResults) allNumbers() []benchKV {
	return slices.Concat(r.numbers(), r.sslNumbers(), r.gpgNumbers())
}

// jsonLine writes the numbers by hand: their keys depend on --recipients,
// and a NaN or infinity is a bug to report, not a value to encode.
func (r *benchResults) jsonLine() (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range r.allNumbers() {
		if math.IsNaN(kv.val) || math.IsInf(kv.val, 0) {
			return "", fmt.Errorf("bench: %s is %v", kv.key, kv.val)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(kv.key))
		b.WriteByte(':')
		b.WriteString(strconv.FormatFloat(kv.val, 'g', 6, 64))
	}
	b.WriteByte('}')
	return b.String(), nil
}

func (r *benchResults) writeTable(w io.Writer) {
	fmt.Fprintf(w, "gilmsg bench: %d cores, %d-bit RSA, %s; bodies of %d B unsigned, %d B signed\n\n",
		r.cores, r.keyBits, runtime.Version(), r.bodyBytes, r.signedBodyBytes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	check := func(ok bool, format string, args ...any) string {
		verdict := "ok"
		if !ok {
			verdict = "MISSED"
		}
		return fmt.Sprintf(format, args...) + " " + verdict
	}
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	row("phase", "result", "against its bound (target)")
	runs := func(v []float64) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf("%.0f", x))
		}
		return "runs: " + strings.Join(s, ", ")
	}
	spread := runs(r.signRuns)
	if r.signSpread() > 0.05 {
		spread += fmt.Sprintf(" (%.0f%% apart: the CPU was shared)", 100*r.signSpread())
	}
	row("RSA sign, 1 goroutine", fmt.Sprintf("%.0f /s", r.rsaSign), spread)
	row("RSA verify, 1 goroutine", fmt.Sprintf("%.0f /s", r.rsaVerify), runs(r.verifyRuns))
	row(fmt.Sprintf("RSA sign, %d goroutines", r.cores), fmt.Sprintf("%.0f /s", r.parSign), runs(r.parSignRuns)+" (around the concurrent phase)")
	row(fmt.Sprintf("RSA verify, %d goroutines", r.cores), fmt.Sprintf("%.0f /s", r.parVerify), runs(r.parVerifyRuns))
	r.gpgRows(row)
	r.sslRows(row, check)
	row("crypto floor: 2 signs + 2 verifies", fmt.Sprintf("%.2f ms", r.floorMS), "crypto/rsa")
	row("floor + raw round trip", fmt.Sprintf("%.2f ms", r.floorPlusRTTMS()), "")
	row("raw ZeroMQ PUB→SUB", fmt.Sprintf("%.0f msg/s", r.raw), "")
	row("raw ZeroMQ round trip, 2 contexts", fmt.Sprintf("p50 %.3f ms, p99 %.3f ms", r.rawRTT.p50, r.rawRTT.p99), "")
	row("raw ZeroMQ PUB→SUB, capped as the bus", fmt.Sprintf("%.0f msg/s", r.rawCapped),
		fmt.Sprintf("SNDHWM = RCVHWM = %d, XPUB_NODROP: the bus's per-subscriber cap", r.rawCap))
	row("publish→tail, unsigned", fmt.Sprintf("%.0f msg/s", r.unsigned),
		check(r.unsignedVsRaw() >= 0.7, "%.2f × raw (≥ 0.7)", r.unsignedVsRaw()))
	row("", "", fmt.Sprintf("%.2f × raw capped as the bus (the refined bound)", r.unsignedVsRawCapped()))
	row(fmt.Sprintf("publish→tail, stored, %d goroutines", benchStoreWriters), fmt.Sprintf("%.0f msg/s", r.stored),
		check(r.stored >= 0.3*r.unsigned, "%.2f × unsigned (≥ 0.3)", r.stored/r.unsigned))
	row("publish→tail, signed+validated", fmt.Sprintf("%.0f msg/s", r.signed),
		check(r.signedVsSignBound() >= 0.8, "%.2f × sign rate (≥ 0.8)", r.signedVsSignBound()))
	row("raw reliable: rsa + zmq4 alone", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", r.rawReliable.p50, r.rawReliable.p99),
		"sign, send, verify, sign, send back, verify")
	row("reliable, 1 recipient", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.lat1.p50, r.lat1.p99, r.lat1.max),
		check(r.p50VsRawReliable() <= 1.3, "p50 %.2f × raw reliable (≤ 1.3)", r.p50VsRawReliable()))
	row("", "", check(r.lat1.p99 <= 3*r.lat1.p50, "p99 %.2f × p50 (≤ 3)", r.lat1.p99/r.lat1.p50))
	row("", "", fmt.Sprintf("p50 %.2f × (floor + raw round trip), %.2f × floor (round 1's bound)", r.p50VsFloorPlusRTT(), r.p50VsFloor()))
	row(fmt.Sprintf("reliable, %d recipients", r.recipients),
		fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.latN.p50, r.latN.p99, r.latN.max), "")
	row(fmt.Sprintf("concurrent reliable, %d goroutines", r.concurrency),
		fmt.Sprintf("%.0f msg/s, %d resends", r.concurrent, r.concurrentResends),
		check(r.concurrentVsCryptoBound() >= 0.7, "%.2f × 2 signs + 2 verifies on %d cores = %.0f/s (≥ 0.7)",
			r.concurrentVsCryptoBound(), r.cores, r.cryptoBound()))
	row("", "", fmt.Sprintf("%.2f × cores×sign/2 = %.0f/s (round 1's bound)", r.concurrentVsSignBound(), r.signBound()))
	row("CPU per message, µs", fmt.Sprintf("raw %.1f, raw capped %.1f, unsigned %.1f, signed %.0f", r.cpuRaw, r.cpuRawCapped, r.cpuUnsigned, r.cpuSigned),
		"whole process: both ends, libzmq threads")
	row("context switches per signed message", fmt.Sprintf("%.1f", r.switchesSigned), "whole process, every thread")
	row("CPU per reliable publish, µs", fmt.Sprintf("1 recipient %.0f, %d recipients %.0f, concurrent %.0f",
		r.lat1.cpuUS, r.recipients, r.latN.cpuUS, r.cpuConcurrent), "")
	row("allocations per message", fmt.Sprintf("unsigned %.0f, signed %.0f, reliable %.0f",
		r.allocsUnsigned, r.allocsSigned, r.allocsReliable), "both ends of the bus counted")
	row("heap after GC", fmt.Sprintf("%.1f MB at %d, %.1f MB at %d msgs",
		r.heapEarlyMB, r.memMessages/10, r.heapEndMB, r.memMessages),
		check(r.heapEndMB <= r.heapEarlyMB*1.1+1, "flat (≤ +10%% + 1 MB)"))
	row("peak RSS", fmt.Sprintf("%.1f MB", r.peakRSSMB), "")
	for _, ep := range r.endpoints {
		row(fmt.Sprintf("%d endpoints, one subscription", ep.n),
			fmt.Sprintf("%.0f msg/s, %.1f µs CPU/msg", ep.rate, ep.cpuUSPerMs),
			fmt.Sprintf("%d OS threads", ep.threads))
	}
	tw.Flush()
}
