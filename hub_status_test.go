package gilmsg

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

func TestHubStatus(t *testing.T) {
	n := newTestNet(t)
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "monitor")
	pub := n.start(pubCN, WithModname("app"))
	n.mutate = func(c *Config) { c.Extra = map[string]any{monitoringSocketKey: endpoint} }
	hub := n.start(c1)
	ok := &recorder{topic: "org.example.dev.app"}
	bad := &recorder{topic: "org.example.dev.app.job", fail: errors.New("no")}
	runConsumers(t, hub, []Consumer{ok, bad}, WithStatusInterval(20*time.Millisecond))

	// Until both consumers have had two messages, the job one failing.
	for i := 0; ok.count() < 2 || bad.count() < 2; i++ {
		if i > 2000 {
			t.Fatal("the consumers got nothing")
		}
		if _, err := pub.Publish(ctxT(t), "job", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	want := func(st *hubStatusReport) bool {
		if len(st.Consumers) != 2 || len(st.Producers) != 1 {
			return false
		}
		c, j := st.Consumers[0], st.Consumers[1]
		return c.HeadcountIn == uint64(ok.count()) && c.HeadcountOut == c.HeadcountIn && c.Exceptions == 0 &&
			j.HeadcountIn == uint64(bad.count()) && j.Exceptions == j.HeadcountIn && j.Backlog == 0 && len(j.Times) > 0
	}
	var st *hubStatusReport
	waitFor(t, "a status with every message counted", func() bool {
		st = readHubStatus(t, endpoint)
		return want(st)
	})
	c := st.Consumers[0]
	if c.Name != "recorder" || c.Module != "github.com/gilmsg/gilmsg-go" || len(c.Topic) != 1 || c.Topic[0] != "org.example.dev.app" || !c.Initialized {
		t.Errorf("consumer status %+v", c)
	}
	if p := st.Producers[0]; p.Name != "MonitoringProducer" || p.Frequency != 0.02 || p.LastRan == 0 {
		t.Errorf("producer status %+v", p)
	}
}

// readHubStatus reads one status from endpoint, as package hubstatus (whose
// tests read what RunConsumers publishes) and fedmsg-check do.
func readHubStatus(t *testing.T, endpoint string) *hubStatusReport {
	t.Helper()
	zctx, err := newContext(1)
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	sock, err := newSocket(zctx, zmq.SUB, testSockOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sock.SetSubscribe("")
	sock.SetRcvtimeo(5 * time.Second)
	if err := sock.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	body, err := sock.RecvBytes(0)
	if err != nil {
		t.Fatalf("no hub status from %s: %v", endpoint, err)
	}
	var st hubStatusReport
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("hub status %q: %v", body, err)
	}
	return &st
}
