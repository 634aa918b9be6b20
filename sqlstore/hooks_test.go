package sqlstore_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// A bus with a store reports, for each batch stored, how long it waited.
func TestStoreLagHook(t *testing.T) {
	st := openStore(t, "sqlite:///"+filepath.Join(t.TempDir(), "store.db"))
	var mu sync.Mutex
	var lags []time.Duration
	hooks := &gilmsg.Hooks{StoreLag: func(d time.Duration) {
		mu.Lock()
		lags = append(lags, d)
		mu.Unlock()
	}}
	cfg := gilmsg.DefaultConfig()
	cfg.Name = "svc"
	cfg.Endpoints = map[string][]string{"svc": {"tcp://127.0.0.1:*"}}
	b, err := gilmsg.New(cfg, gilmsg.WithStore(st), gilmsg.WithHooks(hooks), gilmsg.WithModname("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publishN(t, b, 20, 4)
	mu.Lock()
	defer mu.Unlock()
	if len(lags) == 0 || len(lags) > 20 {
		t.Fatalf("%d store lags reported for 20 messages", len(lags))
	}
	for _, d := range lags {
		if d < 0 {
			t.Errorf("negative lag %v", d)
		}
	}
}
