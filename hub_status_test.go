package gilmsg

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestHubStatus(t *testing.T) {
	n := newTestNet(t)
	endpoint := "ipc://" + filepath.Join(t.TempDir(), "monitor")
	pub := n.start(pubCN, WithModname("app"))
	n.mutate = func(c *Config) { c.Extra = map[string]any{MonitoringSocketKey: endpoint} }
	hub := n.start(c1)
	ok := &recorder{topic: "org.example.dev.app"}
	bad := &recorder{topic: "org.example.dev.app.job", fail: errors.New("no")}
	runConsumers(t, hub, []Consumer{ok, bad}, StatusInterval(20*time.Millisecond))

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
	want := func(st *HubStatus) bool {
		if len(st.Consumers) != 2 || len(st.Producers) != 1 {
			return false
		}
		c, j := st.Consumers[0], st.Consumers[1]
		return c.HeadcountIn == uint64(ok.count()) && c.HeadcountOut == c.HeadcountIn && c.Exceptions == 0 &&
			j.HeadcountIn == uint64(bad.count()) && j.Exceptions == j.HeadcountIn && j.Backlog == 0 && len(j.Times) > 0
	}
	var st *HubStatus
	waitFor(t, "a status with every message counted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		st, _, err = ReadHubStatus(ctx, endpoint)
		if err != nil {
			t.Fatal(err)
		}
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
