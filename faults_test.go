package gilmsg

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gilmsg/gilmsg-go/internal/devpki"
)

// reliableUntil publishes reliably to recipients until one publish
// succeeds: after a restart, reconnections take up to zmq_reconnect_ivl_max.
func reliableUntil(t *testing.T, pub *Bus, recipients ...string) {
	t.Helper()
	waitFor(t, "a reliable publish to succeed again", func() bool {
		_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(recipients...), WithAckTimeout(300*time.Millisecond))
		if err != nil && !errors.Is(err, ErrAckTimeout) {
			t.Fatal(err)
		}
		return err == nil
	})
}

// A consumer killed mid-stream makes the next reliable publish time out,
// naming it; restarted on its endpoint, it is reached again without
// restarting the publisher.
func TestConsumerKilledAndRestarted(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	cs, buses := n.consumers(t, c1, c2)
	b := buses[1]
	for range 5 {
		if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1, c2), WithAckTimeout(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1, c2), WithAckTimeout(2*time.Second))
	var te *AckTimeoutError
	if !errors.As(err, &te) || len(te.Missing) != 1 || te.Missing[0] != c2 {
		t.Fatalf("err = %v, want a timeout naming %s", err, c2)
	}
	restarted := n.start(c2) // binds the endpoint it had
	cs.run(t, c2, restarted)
	reliableUntil(t, pub, c1, c2)
}

// A publisher restarted on its endpoint keeps reaching its consumers: their
// SUB sockets reconnect.
func TestPublisherRestarted(t *testing.T) {
	n := newTestNet(t)
	pub := n.start(pubCN)
	consumer := n.start(c1)
	var cs consumerSet
	cs.run(t, c1, consumer)
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	again := n.start(pubCN)
	if err := again.WaitSubscribers(ctxT(t), "job", 1); err != nil {
		t.Fatal(err)
	}
	reliableUntil(t, again, c1)
}

// A relay that goes away makes active publishers fail loudly; back on its
// address, they publish again.
func TestRelayDownAndBack(t *testing.T) {
	n := newTestNet(t)
	startRelay := func(in, out string) (*Relay, func()) {
		cfg := n.config("")
		cfg.RelayInbound = []string{in}
		cfg.Endpoints = map[string][]string{"relay_outbound": {out}}
		r, err := NewRelay(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		return r, func() { cancel(); <-done; r.Close() }
	}
	relay, stop := startRelay("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
	in, out := relay.InboundEndpoint(), relay.OutboundEndpoint()

	cfg := n.config("")
	cfg.Active = true
	cfg.SignMessages = false
	cfg.RelayInbound = []string{in}
	pub, err := New(cfg, WithReadyTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Publish(ctxT(t), "x", nil); err != nil {
		t.Fatalf("relay up: %v", err)
	}
	stop()
	waitFor(t, "the publisher to notice", func() bool {
		_, err := pub.Publish(ctxT(t), "x", nil)
		return errors.Is(err, ErrNotConnected)
	})
	_, stop = startRelay(in, out)
	defer stop()
	waitFor(t, "the relay to be back", func() bool {
		_, err := pub.Publish(ctxT(t), "x", nil)
		return err == nil
	})
}

// A consumer whose certificate is revoked while everything runs stops
// counting as an ACK: the publisher times out naming it, never succeeds.
func TestRevokedWhileRunning(t *testing.T) {
	pki, err := newDevPKI(t.TempDir(), devpki.Options{KeyBits: 1024, Hosts: []string{pubCN, c1}})
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNet(t)
	n.pki = pki
	pub := n.start(pubCN)
	consumer := n.start(c1)
	var cs consumerSet
	cs.run(t, c1, consumer)
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := pki.Revoke(c1); err != nil {
		t.Fatal(err)
	}
	// The validator looks at the CRL file about once a second.
	waitFor(t, "the revocation to bite", func() bool {
		_, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(300*time.Millisecond))
		if err == nil {
			return false
		}
		if !errors.Is(err, ErrAckTimeout) {
			t.Fatal(err)
		}
		return true
	})
	if pub.Stats().AcksRejected["invalid: revoked"] == 0 {
		t.Fatalf("no ACK rejected as revoked: %v", pub.Stats().AcksRejected)
	}
}

// Timestamps are not checked, as in fedmsg: a peer with a skewed clock is
// still heard.
func TestClockSkewIsAccepted(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	n.endpoints["skewed"] = []string{ep}
	pub := n.start(pubCN)
	sub := n.start("")
	msgs := tail(t, sub, "")
	for _, ts := range []int64{0, 1, time.Now().Add(10 * 365 * 24 * time.Hour).Unix()} {
		out, err := pub.prepare(context.Background(), "x", map[string]any{"ts": ts}, &pubOptions{}, prepFlags{})
		if err != nil {
			t.Fatal(err)
		}
		env, _ := ParseEnvelope(out.body)
		fields := env.Fields()
		fields[fieldTimestamp] = ts
		if err := pub.signer.Sign(fields); err != nil {
			t.Fatal(err)
		}
		body, _ := MarshalCanonical(fields)
		waitFor(t, "the skewed message", func() bool {
			raw.SendMessage(out.topic, string(body))
			select {
			case m := <-msgs:
				return m.Timestamp == ts && m.Signer == pubCN
			case <-time.After(20 * time.Millisecond):
				return false
			}
		})
	}
}
