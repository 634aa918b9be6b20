package gilmsg

import (
	"errors"
	"strings"
	"testing"
)

// TestOptionsCheckTheirInput: a value an option cannot take fails New,
// naming the option, instead of changing its meaning silently.
func TestOptionsCheckTheirInput(t *testing.T) {
	for _, c := range []struct {
		opt  Option
		name string
	}{
		{WithMaxInFlight(0), "WithMaxInFlight(0)"},
		{WithMaxInFlight(-3), "WithMaxInFlight(-3)"},
		{WithMaxMessageSize(0), "WithMaxMessageSize(0)"},
		{WithMaxMessageSize(-2), "WithMaxMessageSize(-2)"},
	} {
		b, err := New(nil, c.opt)
		if err == nil {
			b.Close()
			t.Errorf("New with %s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("New with %s: %v, want ErrInvalidOption naming it", c.name, err)
		}
	}
	b, err := New(nil, WithMaxMessageSize(-1), WithMaxInFlight(1))
	if err != nil {
		t.Fatalf("New with -1 (no limit) and 1: %v", err)
	}
	b.Close()
}

// TestRelayOptionsCheckTheirInput: as TestOptionsCheckTheirInput, for
// NewRelay.
func TestRelayOptionsCheckTheirInput(t *testing.T) {
	for _, c := range []struct {
		opt  RelayOption
		name string
	}{
		{WithRelayQueue(0), "WithRelayQueue(0)"},
		{WithRelayQueue(-1), "WithRelayQueue(-1)"},
		{WithRelayQueue(1 << 32), "WithRelayQueue(4294967296)"},
		{WithRelayOutbound("gateway"), `WithRelayOutbound("gateway", [])`},
		{WithRelayOutbound("", "tcp://127.0.0.1:*"), `WithRelayOutbound("", ["tcp://127.0.0.1:*"])`},
	} {
		r, err := NewRelay(relayTestConfig(), c.opt)
		if err == nil {
			r.Close()
			t.Errorf("NewRelay with %s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("NewRelay with %s: %v, want ErrInvalidOption naming it", c.name, err)
		}
	}
	r, err := NewRelay(relayTestConfig(), WithRelayQueue(1), WithRelayOutbound("out", "tcp://127.0.0.1:*"))
	if err != nil {
		t.Fatalf("NewRelay with a queue of 1 and an outbound address: %v", err)
	}
	r.Close()
}
