package gilmsg

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile input that hostile_input_test.go does not cover: junk aimed at
// the ACK listener of a publisher that is waiting, and oversized messages
// from real peers, whose dropped connection is the one that carries the
// traffic that matters.

// logRecorder keeps the message of every record logged through it.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) has(msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.msgs, msg)
}

// The message tail.go logs when it restores a connection libzmq dropped
// for a protocol error.
const logReconnected = "gilmsg: reconnected after the peer broke the protocol"

// A real peer that sends a message over the receiver's WithMaxMessageSize
// loses its connection, and with it whatever else was on its way; the
// receiving subscription makes the connection again, and the next reliable
// publish succeeds without anyone restarting anything. Both connections a
// reliable publish needs are tried: the publisher's to the consumer (ACKs)
// and the consumer's to the publisher (messages).
func TestOversizedFromRealPeer(t *testing.T) {
	const limit = 16 << 10 // well above an ACK or a signed job (a few kB)
	big := map[string]any{"pad": strings.Repeat("x", 4*limit)}
	for _, tc := range []struct {
		name    string
		limited string // the bus with the size limit
		// send makes the other side send an oversized message on the
		// limited side's connection.
		send func(t *testing.T, pub, consumer *Bus) error
	}{
		{"ACK path", pubCN, func(t *testing.T, pub, consumer *Bus) error {
			_, err := consumer.Publish(ctxT(t), pub.ackTopic, big)
			return err
		}},
		{"message path", c1, func(t *testing.T, pub, consumer *Bus) error {
			_, err := pub.Publish(ctxT(t), "job", big)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			logs := &logRecorder{}
			opts := func(name string) []Option {
				if name == tc.limited {
					return []Option{WithMaxMessageSize(limit), WithLogger(slog.New(logs))}
				}
				return nil
			}
			pub := n.start(pubCN, opts(pubCN)...)
			consumer := n.start(c1, opts(c1)...)
			var cs consumerSet
			cs.run(t, c1, consumer)
			if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := tc.send(t, pub, consumer); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the dropped connection to be made again", func() bool { return logs.has(logReconnected) })
			r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
			if err != nil {
				t.Fatalf("after the oversized message: %v", err)
			}
			waitFor(t, "the consumer to see it", func() bool { return cs.count(c1, r.MsgID) == 1 })
		})
	}
}

// Every class of malformed input, flooded on the ACK topic by a hostile
// peer while a reliable publish waits: the publish succeeds on the real
// recipient's ACK alone, and the junk is counted, as invalid frames or as
// rejected ACKs.
func TestJunkOnAckTopicWhileWaiting(t *testing.T) {
	n := newTestNet(t)
	raw, ep := rawPub(t)
	// Mallory sits where every ACK listener listens, whoever the
	// recipients: on the relay's outbound side.
	n.endpoints["relay_outbound"] = []string{ep}
	pub := n.start(pubCN)
	consumer := n.start(c1)
	ack := pub.ackTopic
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	junk := [][]string{
		{ack},
		{ack, "{}", "third"},
		{ack, "{\"topic\":\"\xff\xfe\"}"},
		{ack + "\xff", "{}"},
		{ack, "not json"},
		{ack, `[1,2,3]`},
		{ack, `{"msg":{}}`},
		{ack, `{"topic":5,"msg":{"ack_msg_id":7}}`},
		{ack, `{"topic":"` + ack + `","msg":` + deep + `}`},
		{ack, `{"topic":"` + ack + `","msg":{"ack_msg_id":` + strings.Repeat("9", 5000) + `}}`},
		{ack, `{"topic":"` + ack + `","msg":{"ack_msg_id":"2026-x"},"signature":"!!","certificate":"!!"}`},
	}
	// Prime the ACK listener, then make sure mallory reaches it.
	var cs consumerSet
	cs.run(t, c1, consumer)
	if _, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hostile peer to reach the ACK listener", func() bool {
		raw.SendMessage(ack, "primer")
		return pub.Stats().Invalid[ReasonMalformed] > 0
	})

	before := pub.Stats()
	quit, done := make(chan struct{}), make(chan struct{})
	sent := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			for _, frames := range junk {
				raw.SendMessage(frames)
				sent++
			}
			time.Sleep(time.Millisecond) // pacing the flood, not synchronising
		}
	}()
	// Junk in flight before the publish starts, and during it.
	waitFor(t, "the flood to arrive", func() bool { return pub.Stats().Invalid[ReasonMalformed] > before.Invalid[ReasonMalformed]+100 })
	r, err := pub.Publish(ctxT(t), "job", nil, WithRecipients(c1), WithAckTimeout(10*time.Second))
	close(quit)
	<-done
	if err != nil {
		t.Fatalf("the real ACK did not get through the junk: %v", err)
	}
	if !slices.Equal(hostsOf(r.Acks), []string{c1}) {
		t.Fatalf("ACKs %v", r.Acks)
	}
	after := pub.Stats()
	if got := after.AcksMatched - before.AcksMatched; got != 1 {
		t.Fatalf("%d ACKs matched, want the real one only", got)
	}
	invalid := after.Invalid[ReasonMalformed] - before.Invalid[ReasonMalformed]
	rejected := after.AcksRejected[ackRejectMalformed] - before.AcksRejected[ackRejectMalformed] +
		after.AcksRejected[ackRejectUnknownID] - before.AcksRejected[ackRejectUnknownID]
	if invalid == 0 || rejected == 0 {
		t.Fatalf("junk not counted: %d malformed frames, %d rejected ACKs", invalid, rejected)
	}
	t.Logf("%d junk messages sent on the ACK topic (%d classes): %d malformed, %d rejected as ACKs, 0 matched",
		sent, len(junk), invalid, rejected)
}
