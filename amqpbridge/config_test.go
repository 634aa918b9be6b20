package amqpbridge

import (
	"errors"
	"strings"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// TestFromConfig reads the amqp_* keys as the loader leaves them in
// Config.Extra: JSON numbers, YAML ints, strings from FEDMSG_* variables.
func TestFromConfig(t *testing.T) {
	data := []byte(`{"name": "bridge01", "amqp_url": "amqp://u:secret@rabbit:5671/vh",
		"amqp_publish_exchange": "zx", "amqp_consume_exchange": "ax", "amqp_queue": "q",
		"amqp_bindings": ["org.#", "com.#"], "amqp_recipients": "a, b", "amqp_window": 10,
		"amqp_workers": "3", "amqp_max_body": 2048, "amqp_reconnect_max": 0.5}`)
	cfg, err := gilmsg.ParseConfig(data, "json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "amqp://u:secret@rabbit:5671/vh" || c.PublishExchange != "zx" || c.ConsumeExchange != "ax" || c.Queue != "q" ||
		len(c.Bindings) != 2 || len(c.Recipients) != 2 || c.Recipients[1] != "b" || c.Window != 10 || c.Workers != 3 ||
		c.MaxBody != 2048 || c.ReconnectMax != 500*time.Millisecond {
		t.Errorf("got %+v", c)
	}
	if RedactURL(c.URL) == c.URL || RedactURL(c.URL) != "amqp://u:xxx@rabbit:5671/vh" {
		t.Errorf("RedactURL = %q", RedactURL(c.URL))
	}

	def, err := FromConfig(gilmsg.DefaultConfig())
	if err != nil || def.URL != DefaultURL || def.PublishExchange != "zmq.topic" || def.ConsumeExchange != "amq.topic" ||
		def.Window != 256 || def.Workers != 2 || def.MaxBody != 1<<20 || def.ReconnectMax != 5*time.Second || def.Bindings[0] != "#" {
		t.Errorf("defaults %+v, %v", def, err)
	}

	for _, bad := range []string{
		`{"amqp_url": "http://x"}`, `{"amqp_url": 3}`, `{"amqp_window": 0}`, `{"amqp_workers": "many"}`,
		`{"amqp_bindings": [1]}`, `{"amqp_consume_exchange": "zmq.topic"}`, `{"amqp_url": "amqp://u:hunter2@h:port/"}`,
		`{"amqp_window": 65536}`, `{"amqp_window": 2e9}`,
	} {
		cfg, err := gilmsg.ParseConfig([]byte(bad), "json")
		if err != nil {
			t.Fatal(err)
		}
		_, err = FromConfig(cfg)
		var ce *gilmsg.ConfigError
		if !errors.As(err, &ce) && !errors.Is(err, gilmsg.ErrConfig) {
			t.Errorf("%s: got %v, want a config error", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the password is in the error: %v", bad, err)
		}
	}
}
