package gilmsg

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestPublishPayloadRules: what goes on the wire for the payloads a Go
// service has in hand, against what Python's json.dumps writes for the
// same JSON (the want column). JSON read from a request stays as it was
// (50 stays 50) through json.RawMessage, DecodeJSON or UseNumber; a
// float64 is a float (50.0), []byte is base64, and an untagged struct
// has Go's field names.
func TestPublishPayloadRules(t *testing.T) {
	const order = `{"amount": 50, "price": 12.5, "sku": "A-1"}`
	useNumber := func() any {
		d := json.NewDecoder(strings.NewReader(order))
		d.UseNumber()
		var v map[string]any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	decoded, err := DecodeJSON([]byte(order))
	if err != nil {
		t.Fatal(err)
	}
	var plain map[string]any
	if err := json.Unmarshal([]byte(order), &plain); err != nil {
		t.Fatal(err)
	}
	type untagged struct{ ID int }
	cases := []struct {
		name string
		msg  any
		want string
	}{
		{"json.RawMessage", json.RawMessage(order), `{"amount":50,"price":12.5,"sku":"A-1"}`},
		{"DecodeJSON", decoded, `{"amount":50,"price":12.5,"sku":"A-1"}`},
		{"UseNumber", useNumber(), `{"amount":50,"price":12.5,"sku":"A-1"}`},
		{"json.Unmarshal into any", plain, `{"amount":50.0,"price":12.5,"sku":"A-1"}`},
		{"[]byte", map[string]any{"b": []byte("hi")}, `{"b":"aGk="}`},
		{"untagged struct", untagged{ID: 7}, `{"ID":7}`},
	}
	n := newTestNet(t)
	pub := n.start(pubCN, WithModname("orders"))
	msgs := tail(t, n.start(""), "")
	if err := pub.WaitSubscribers(ctxT(t), "order.created", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if _, err := pub.Publish(ctxT(t), "order.created", c.msg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := receive(t, msgs).RawMsg(); !bytes.Equal(got, []byte(c.want)) {
			t.Errorf("%s: on the wire %s, want %s", c.name, got, c.want)
		}
	}
	if _, err := pub.Publish(ctxT(t), "order.created", json.RawMessage(`{"amount":`)); err == nil {
		t.Error("Publish of a truncated json.RawMessage: no error")
	}
}

func TestFullTopic(t *testing.T) {
	n := newTestNet(t)
	b := n.start("", WithModname("orders"))
	for _, c := range []struct{ modname, short, want string }{
		{"", "order.created", "org.example.dev.orders.order.created"},
		{"billing", "invoice.", "org.example.dev.billing.invoice."},
		{"billing", "", "org.example.dev.billing."},
		{"", "", "org.example.dev.orders."},
		{"", "org.example.dev.x.y", "org.example.dev.x.y"},
	} {
		if got := b.FullTopic(c.modname, c.short); got != c.want {
			t.Errorf("FullTopic(%q, %q) = %q, want %q", c.modname, c.short, got, c.want)
		}
	}
}
