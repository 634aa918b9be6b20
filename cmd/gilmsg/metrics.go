package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// metricsFlag is the flag of every long-running command.
const metricsFlag = "metrics-addr"

// maxPrefixLabels bounds the topic prefixes counted apart: topics come
// from the network, and every label value is a time series kept forever.
const maxPrefixLabels = 256

// otherPrefix labels the topics past maxPrefixLabels, those outside
// topic_prefix, and those whose modname is not a short identifier.
const otherPrefix = "other"

// maxModnameLen bounds a modname that gets a label of its own: real ones
// ("bodhi", "fedora_elections") are short, and a label's bytes are kept
// and sent with every scrape.
const maxModnameLen = 64

// metricsStart starts serving metrics for a command run with cfg.
type metricsStart func(cfg *gilmsg.Config) (hooks *gilmsg.Hooks, stop func(), err error)

// addMetrics gives cmd the --metrics-addr flag and returns what its RunE
// calls to start serving: when the flag is set, it listens there, says
// where on stderr, serves Prometheus metrics at /metrics until stop, and
// returns the hooks to hand to the library (see [gilmsg.Hooks]); when it
// is not, hooks is nil. stop is never nil, and waits for the server.
func addMetrics(cmd *cobra.Command) metricsStart {
	var addr string
	cmd.Flags().StringVar(&addr, metricsFlag, "", "serve Prometheus metrics at http://`HOST:PORT`/metrics")
	return func(cfg *gilmsg.Config) (*gilmsg.Hooks, func(), error) {
		if addr == "" {
			return nil, func() {}, nil
		}
		m := newMetrics(cfg.TopicPrefix + "." + cfg.Environment)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", metricsFlag, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg %s: metrics server: %v\n", cmd.Name(), err)
			}
		}()
		fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg %s: metrics at http://%s/metrics\n", cmd.Name(), l.Addr())
		stop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
			<-done
		}
		return m.hooks(), stop, nil
	}
}

// metrics holds the Prometheus side of [gilmsg.Hooks].
type metrics struct {
	reg *prometheus.Registry
	// scope is "<topic_prefix>.<environment>": a topic under it is
	// labelled by its modname, one part further.
	scope string

	in, out, rejected, ackRejected, replay *prometheus.CounterVec
	ackMatched, ackTimedOut, resends       prometheus.Counter
	gapsGivenUp                            prometheus.Counter
	storeLag                               prometheus.Gauge

	mu       sync.Mutex
	prefixes map[string]string // topic prefix → label
}

func newMetrics(scope string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), scope: scope, prefixes: map[string]string{}}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "gilmsg", Name: name, Help: help}, []string{label})
		m.reg.MustRegister(c)
		return c
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gilmsg", Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	m.in = counterVec("messages_in_total", "Messages accepted (validated, not duplicates) or forwarded, by topic prefix.", "prefix")
	m.out = counterVec("messages_out_total", "Messages sent (publishes, ACKs, resends, forwards), by topic prefix.", "prefix")
	m.rejected = counterVec("messages_rejected_total", "Received messages dropped as invalid, by reason.", "reason")
	m.ackMatched = counter("acks_matched_total", "ACKs that completed a recipient of a reliable publish.")
	m.ackRejected = counterVec("acks_rejected_total", "ACKs that did not count, by reason.", "reason")
	m.ackTimedOut = counter("ack_timeouts_total", "Reliable publishes that ended without every ACK.")
	m.resends = counter("resends_total", "Reliable messages sent again while ACKs were missing.")
	m.replay = counterVec("replay_requests_total", "Replay requests, by result (ok, refused).", "result")
	m.gapsGivenUp = counter("gaps_given_up_total", "Runs of missed seq_ids a subscription stopped asking its replay server for (replay_gap_max_age).")
	m.storeLag = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gilmsg", Name: "store_lag_seconds",
		Help: "How far the message store was behind the bus at its last stored message."})
	m.reg.MustRegister(m.storeLag, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// prefix is the label of topic: "<topic_prefix>.<environment>.<modname>"
// for the bus's own topics, a bounded number of them.
func (m *metrics) prefix(topic string) string {
	rest, ok := strings.CutPrefix(topic, m.scope+".")
	if !ok || !utf8.ValidString(topic) {
		return otherPrefix
	}
	modname, _, _ := strings.Cut(rest, ".")
	if !isModname(modname) {
		return otherPrefix
	}
	p := topic[:len(m.scope)+1+len(modname)]
	m.mu.Lock()
	defer m.mu.Unlock()
	if label, ok := m.prefixes[p]; ok {
		return label
	}
	if len(m.prefixes) >= maxPrefixLabels {
		return otherPrefix
	}
	p = strings.Clone(p) // not the whole message's memory
	m.prefixes[p] = p
	return p
}

// isModname reports a short identifier: letters, digits, '_' and '-'.
func isModname(s string) bool {
	if s == "" || len(s) > maxModnameLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (m *metrics) hooks() *gilmsg.Hooks {
	return &gilmsg.Hooks{
		MessageIn:   func(topic string) { m.in.WithLabelValues(m.prefix(topic)).Inc() },
		MessageOut:  func(topic string) { m.out.WithLabelValues(m.prefix(topic)).Inc() },
		Rejected:    func(r gilmsg.Reason) { m.rejected.WithLabelValues(string(r)).Inc() },
		AckMatched:  m.ackMatched.Inc,
		AckRejected: func(reason string) { m.ackRejected.WithLabelValues(labelValue(reason)).Inc() },
		AckTimedOut: m.ackTimedOut.Inc,
		Resend:      func(string) { m.resends.Inc() },
		ReplayRequest: func(ok bool) {
			result := "refused"
			if ok {
				result = "ok"
			}
			m.replay.WithLabelValues(result).Inc()
		},
		StoreLag:   func(d time.Duration) { m.storeLag.Set(d.Seconds()) },
		GapGivenUp: m.gapsGivenUp.Inc,
	}
}

// labelValue keeps a label valid UTF-8, which Prometheus requires.
func labelValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
