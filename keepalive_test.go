package gilmsg

import (
	"errors"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// TestKeepaliveZero: with zmq_tcp_keepalive on (or off, anything but -1),
// libzmq passes zmq_tcp_keepalive_cnt, _idle and _intvl to setsockopt,
// Linux refuses 0 for each, and libzmq drops every TCP connection it
// makes, with no error to its owner: only the socket monitor sees each
// try retried, forever. Validate refuses such a config,
// naming the key.
func TestKeepaliveZero(t *testing.T) {
	for _, tc := range []struct {
		key string
		set func(*Config)
	}{
		{"zmq_tcp_keepalive_cnt", func(c *Config) { c.ZMQTCPKeepaliveCnt = 0 }},
		{"zmq_tcp_keepalive_idle", func(c *Config) { c.ZMQTCPKeepaliveIdle = 0 }},
		{"zmq_tcp_keepalive_intvl", func(c *Config) { c.ZMQTCPKeepaliveIntvl = 0 }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			checkLeaks(t)
			cfg := DefaultConfig()
			tc.set(cfg)
			if n := connectTries(t, cfg); n != 0 {
				t.Fatalf("%d connections made with %s 0: the failure this test shows is gone", n, tc.key)
			}
			var ce *ConfigError
			if err := cfg.Validate(); !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("Validate: %v, want a ConfigError naming %s", err, tc.key)
			}
			if _, err := New(cfg); !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("New: %v, want a ConfigError naming %s", err, tc.key)
			}
			// With keepalive left to the OS, libzmq sets none of them,
			// and 0 is harmless.
			cfg.ZMQTCPKeepalive = -1
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate with zmq_tcp_keepalive -1: %v", err)
			}
		})
	}
	t.Run("defaults connect", func(t *testing.T) {
		checkLeaks(t)
		if n := connectTries(t, DefaultConfig()); n == 0 {
			t.Fatal("no connection with the default keepalive settings")
		}
	})
}

// connectTries connects a SUB with cfg's socket options to a PUB with
// the defaults and returns how many connections it made (0 or 1) by the
// time libzmq has given up its third try (EVENT_CONNECT_RETRIED, its
// only sign of the failure): Connect itself never fails.
func connectTries(t *testing.T, cfg *Config) int {
	t.Helper()
	zctx := testZCtx(t)
	pub := testSocket(t, zctx, zmq.PUB, testSockOpts())
	ep := bindLoopback(t, pub)
	o := sockOptsFromConfig(cfg)
	o.LingerMS, o.ReconnectIvlMS, o.ReconnectIvlMaxMS = 0, 10, 50
	sub := testSocket(t, zctx, zmq.SUB, o)
	if err := sub.Monitor("inproc://keepalive-mon", zmq.EVENT_CONNECTED|zmq.EVENT_CONNECT_RETRIED); err != nil {
		t.Fatal(err)
	}
	mon := testSocket(t, zctx, zmq.PAIR, testSockOpts())
	if err := mon.Connect("inproc://keepalive-mon"); err != nil {
		t.Fatal(err)
	}
	if err := mon.SetRcvtimeo(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sub.Connect(ep); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	for retried := 0; retried < 3; {
		ev, _, _, err := mon.RecvEvent(0)
		if err != nil {
			t.Fatalf("no monitor event within 5s: %v", err)
		}
		switch ev {
		case zmq.EVENT_CONNECTED:
			return 1
		case zmq.EVENT_CONNECT_RETRIED:
			retried++
		}
	}
	return 0
}
