package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

var metricsAtRE = regexp.MustCompile(`metrics at (http://\S+/metrics)`)

// metricsURL waits for a command started with --metrics-addr to say where
// it serves, on stderr.
func metricsURL(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := metricsAtRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address on stderr: %q", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrape fetches url and returns the value of the sample named series
// (name{labels} exactly as exposed), and -1 when there is none.
func scrape(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: %s, %v", resp.Status, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric scrapes until series reaches at least want.
func waitMetric(t *testing.T, url, series string, want float64, meanwhile func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, url, series)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want at least %v", series, got, want)
		}
		if meanwhile != nil {
			meanwhile()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTailMetrics(t *testing.T) {
	t.Parallel()
	pki := devPKI(t, tailPubCN)
	cfg := testConfig(pki)
	cfg.Name, cfg.Modname = tailPubCN, "test"
	cfg.Endpoints = map[string][]string{tailPubCN: {"tcp://127.0.0.1:*"}, "unsigned": {"tcp://127.0.0.1:*"}}
	signed := newBus(t, cfg)
	ucfg := testConfig(pki)
	ucfg.Name, ucfg.Modname, ucfg.SignMessages = "unsigned", "junk", false
	ucfg.Endpoints = cfg.Endpoints
	unsigned := newBus(t, ucfg)
	tcfg := testConfig(pki)
	tcfg.Endpoints = map[string][]string{tailPubCN: {signed.Endpoint()}, "unsigned": {unsigned.Endpoint()}}

	_, stderr, done := startCLI(t, context.Background(), nil, "tail", "--config", writeConfig(t, tcfg), "--metrics-addr", "127.0.0.1:0")
	url := metricsURL(t, stderr)
	publish := func() {
		ctx := context.Background()
		if _, err := signed.Publish(ctx, "tick", map[string]any{"n": 1}); err != nil {
			t.Errorf("publish: %v", err)
		}
		if _, err := unsigned.Publish(ctx, "tock", map[string]any{"n": 2}); err != nil {
			t.Errorf("publish: %v", err)
		}
	}
	waitMetric(t, url, `gilmsg_messages_in_total{prefix="org.example.dev.test"}`, 3, publish)
	waitMetric(t, url, `gilmsg_messages_rejected_total{reason="`+string(gilmsg.ReasonUnsigned)+`"}`, 3, publish)
	if got := scrape(t, url, `gilmsg_messages_in_total{prefix="org.example.dev.junk"}`); got != -1 {
		t.Errorf("rejected messages counted in: %v", got)
	}
	if got := scrape(t, url, `gilmsg_acks_matched_total`); got != 0 {
		t.Errorf("acks_matched = %v, want 0", got)
	}
	select {
	case res := <-done:
		t.Fatalf("tail ended early: %d %q", res.code, res.stderr)
	default:
	}
}

func TestReplayServerMetrics(t *testing.T) {
	cfg := gilmsg.DefaultConfig()
	cfg.Name = "pub"
	cfg.Endpoints = map[string][]string{"pub": {"tcp://127.0.0.1:*"}}
	cfg.ReplayEndpoints = map[string]string{"pub": freePort(t)}
	cfg.PersistentStore = "sqlite:///" + filepath.Join(t.TempDir(), "store.db")
	_, stderr, done := startCLI(t, context.Background(), nil, "--config", writeConfig(t, cfg), "replay-server", "--metrics-addr", "127.0.0.1:0")
	url := metricsURL(t, stderr)
	deadline := time.Now().Add(30 * time.Second)
	for askReplay(t, cfg.ReplayEndpoints["pub"], `{"seq_id": 1}`) == nil { // nothing stored: refused
		if time.Now().After(deadline) {
			t.Fatalf("replay-server never answered: %s", stderr.String())
		}
	}
	waitMetric(t, url, `gilmsg_replay_requests_total{result="refused"}`, 1, nil)
	// SIGHUP, which would kill a process that does not listen for it:
	// replay-server listens once it says it is serving.
	waitOutput(t, stderr, "serving", nil)
	signalSelf(t, syscall.SIGHUP)
	waitOutput(t, stderr, "SIGHUP: nothing to reload", nil)
	select {
	case res := <-done:
		t.Fatalf("replay-server ended: %d %q", res.code, res.stderr)
	default:
	}
}

// TestMetricsLabelsBounded: topics from the network cannot grow /metrics.
// A modname that is not a short identifier is counted as other (300 of
// 1 MB made every scrape 512 MB, and used up the labels, so that real
// modnames were counted as other from then on).
func TestMetricsLabelsBounded(t *testing.T) {
	t.Parallel()
	m := newMetrics("org.example.prod")
	h := m.hooks()
	huge := strings.Repeat("x", 1<<20)
	for i := range 300 {
		h.MessageIn("org.example.prod." + huge + strconv.Itoa(i) + ".update")
		h.MessageIn("org.example.prod.bad modname " + strconv.Itoa(i) + ".update")
	}
	h.MessageIn("org.example.prod.bodhi.update.comment")
	h.MessageIn("org.example.prod.fedora_elections.candidate.new")

	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	for _, series := range []string{
		`gilmsg_messages_in_total{prefix="org.example.prod.bodhi"}`,
		`gilmsg_messages_in_total{prefix="org.example.prod.fedora_elections"}`,
	} {
		if got := scrape(t, srv.URL, series); got != 1 {
			t.Errorf("%s = %v, want 1", series, got)
		}
	}
	if got := scrape(t, srv.URL, `gilmsg_messages_in_total{prefix="other"}`); got != 600 {
		t.Errorf("other = %v, want 600", got)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) > 64<<10 {
		t.Errorf("/metrics is %d bytes after hostile topics", len(body))
	}
}
