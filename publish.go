package gilmsg

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// PublishOption configures one [Bus.Publish].
type PublishOption func(*pubOptions)

type pubOptions struct {
	modname    string
	msgID      string // set by WithMsgID: a bridge keeps the id it was given
	username   string
	exactTopic bool
	recipients []string
	reliable   bool // WithRecipients was given, maybe with nobody
	ackTimeout time.Duration
}

// WithTopicModname sets the modname part of this message's full topic.
func WithTopicModname(m string) PublishOption { return func(o *pubOptions) { o.modname = m } }

// WithMsgID sends the message under this msg_id instead of a fresh one. A
// bridge that republishes messages from elsewhere uses it so that a
// redelivered copy keeps its id and subscribers drop it as a duplicate.
func WithMsgID(id string) PublishOption { return func(o *pubOptions) { o.msgID = id } }

// WithUsername sets the envelope's username. Default: the OS user name.
func WithUsername(u string) PublishOption { return func(o *pubOptions) { o.username = u } }

// WithExactTopic sends the message on topic as given, not under
// <topic_prefix>.<environment>.<modname>: for topics that come from
// another bus with their own naming.
func WithExactTopic() PublishOption { return func(o *pubOptions) { o.exactTopic = true } }

// WithRecipients makes the publish reliable: it returns only when every named
// certificate CN has ACKed, or fails with an [AckTimeoutError]. Names may
// also be given comma separated. They are CNs (billing01.example.org), not
// endpoint names (billing01): an ACK counts when that CN's certificate
// signed it.
func WithRecipients(cn ...string) PublishOption {
	return func(o *pubOptions) {
		o.reliable = true
		for _, c := range cn {
			for _, part := range strings.Split(c, ",") {
				if part = strings.TrimSpace(part); part != "" {
					o.recipients = append(o.recipients, part)
				}
			}
		}
	}
}

// WithAckTimeout bounds the wait for ACKs. Default: the config's ack_timeout
// ([Config.AckTimeout]). A context deadline that comes first wins.
func WithAckTimeout(d time.Duration) PublishOption { return func(o *pubOptions) { o.ackTimeout = d } }

// Receipt describes a published message.
type Receipt struct {
	Topic string // the full topic
	MsgID string
	// SeqID is the seq_id the bus's store gave the message; 0 without a
	// store ([WithStore]).
	SeqID int64
	// Acks lists, for a reliable publish, each recipient and how long its
	// ACK took, in the order the recipients were given.
	Acks []Ack
}

// Ack is one recipient's acknowledgement.
type Ack struct {
	Recipient string
	Delay     time.Duration
}

// Publish sends msg on topic, signed when sign_messages is set. The full
// topic is <topic_prefix>.<environment>.<modname>.<topic> ([Bus.FullTopic]) unless topic
// already starts with topic_prefix.
//
// Without [WithRecipients] it is fire-and-forget like fedmsg.publish: it returns
// once the message is queued on the PUB socket, and blocks only while the
// queue is full. Given WithRecipients, it waits for their ACKs (see the package
// documentation, "Reliability").
//
// A queued message has not left yet: a program that exits without
// [Bus.Close] loses what is still queued, without a word (Python flushes
// at interpreter exit; Go has no such hook). Close sends it, waiting up to
// zmq_linger; defer it in main.
//
// msg is encoded as Python's json.dumps would encode the same JSON
// ([AppendCanonical] has every rule):
//   - JSON you already have (a request body) goes as a [json.RawMessage],
//     or as decoded by [DecodeJSON] or a json.Decoder with UseNumber: 50
//     stays 50. Decoded by plain json.Unmarshal into any, every number is a
//     float64, and a float64 is a float on the wire, as in Python: 50.0.
//   - []byte is a base64 string, as encoding/json writes it.
//   - A struct goes through encoding/json: without json tags its keys are
//     the Go field names ("ID").
//
// Publish is safe for use by many goroutines; messages from one goroutine
// leave in the order they were published.
func (b *Bus) Publish(ctx context.Context, topic string, msg any, opts ...PublishOption) (*Receipt, error) {
	po := pubOptionsOf(opts)
	if len(po.recipients) > 0 {
		return b.publishReliable(ctx, topic, msg, &po)
	}
	if po.reliable {
		b.log.Warn("gilmsg: reliable publish without recipients: sent as a plain fedmsg message, nobody will ACK it", slog.String("topic", topic))
	}
	if err := b.warmUp(ctx, ""); err != nil {
		return nil, err
	}
	out, err := b.prepare(ctx, topic, msg, &po, prepFlags{sign: b.cfg.SignMessages})
	if err != nil {
		return nil, err
	}
	if err := b.send(ctx, out); err != nil {
		return nil, err
	}
	return &Receipt{Topic: out.topic, MsgID: out.msgID, SeqID: out.seqID}, nil
}

// pubOptionsOf applies opts. Applied to a local variable, they would move
// it to the heap for every publish, options or none.
func pubOptionsOf(opts []PublishOption) pubOptions {
	if len(opts) == 0 {
		return pubOptions{}
	}
	po := new(pubOptions)
	for _, opt := range opts {
		opt(po)
	}
	return *po
}

// outgoing is a message encoded once, ready to be sent (and resent).
type outgoing struct {
	topic string
	msgID string
	body  []byte
	seqID int64 // from the bus's store, else 0
	// bodyBuf, when set, is body's pooled buffer: nothing but the send
	// reads body, and the publisher's goroutine returns it once sent.
	bodyBuf *[]byte
	// stored, when set, is this unsigned message on its way into the
	// bus's store, which gives it its seq_id: body has none yet.
	stored *StoreEntry
	// sent, when set (a reliable publish), is closed once the message
	// has left the socket the first time.
	sent chan struct{}
	// noWait (an ACK) sends past full subscribers at once instead of
	// waiting zmq_send_wait for them (zsock.Fanout.SendPast).
	noWait bool
}

// prepFlags says what prepare adds to fedmsg's envelope.
type prepFlags struct {
	gilmsg bool // gilmsg_version, before signing: a reliable publish
	sign   bool
}

// prepare builds, signs and encodes the envelope (WIRE.md §2), and, with a
// store, stores it, waiting for the store no longer than ctx allows.
func (b *Bus) prepare(ctx context.Context, topic string, msg any, po *pubOptions, flags prepFlags) (*outgoing, error) {
	out, fields, err := b.envelope(topic, msg, po, flags)
	if err != nil {
		return nil, err
	}
	if fields == nil {
		if out.stored != nil {
			return b.storeOne(ctx, out.stored)
		}
		return out, nil
	}
	if b.stores(fields) {
		return b.prepareStored(ctx, fields, flags.sign)
	}
	return b.seal(fields, flags.sign)
}

// stores says whether a message whose envelope is fields goes to the
// bus's store: every message but ACKs, when there is one.
func (b *Bus) stores(fields map[string]any) bool {
	topic, _ := fields[fieldTopic].(string)
	return b.storeW != nil && topic != b.ackTopic
}

// envelope builds the envelope of one message. An unsigned message is
// encoded at once (out), a stored one without its seq_id (out.stored,
// which the store seals); a signed one is returned as fields, for seal or
// the store to finish.
func (b *Bus) envelope(topic string, msg any, po *pubOptions, flags prepFlags) (out *outgoing, fields map[string]any, err error) {
	gilmsg, sign := flags.gilmsg, flags.sign
	if b.pub == nil {
		return nil, nil, fmt.Errorf("%w: the bus has no endpoint to publish from (set name with endpoints, or active)", ErrConfig)
	}
	if msg == nil {
		msg = map[string]any{}
	}
	full := topic
	if !po.exactTopic {
		full = b.fullTopic(topic, po.modname)
	}
	stored := b.storeW != nil && full != b.ackTopic
	// No map to sign: the payload's text is copied into the body and need
	// not outlive this call.
	plain := !sign
	// Sized like the last payload: a typical one outgrows MarshalCanonical's
	// first guess and would be copied twice on the way.
	var scratch *[]byte
	var dst []byte
	if plain {
		scratch = scratchBufs.Get().(*[]byte)
		dst = *scratch
	} else {
		dst = make([]byte, 0, max(512, b.pub.payloadCap.Load()))
	}
	// One level deep, inside the envelope: a msg nested MaxJSONDepth
	// deep would make a body that every subscriber refuses to parse.
	raw, err := appendCanonicalAt(dst, msg, 1)
	b.pub.payloadCap.Store(int64(len(raw)))
	if err != nil {
		return nil, nil, fmt.Errorf("encoding msg: %w", err)
	}
	now := time.Now()
	msgID := po.msgID
	if msgID == "" {
		msgID = newMsgID(now)
	}
	username := po.username
	if username == "" {
		username = b.username
	}
	// What a subscriber's max_message_size bounds is the whole body: a
	// msg just under it, with its envelope, was sent, and every Go
	// subscriber dropped its connection with it and what followed.
	if limit := b.opts.maxMsgSize; limit > 0 {
		if size := int64(len(raw)) + b.envelopeBytes(full, msgID, username, sign); size > limit {
			if plain {
				putScratch(scratch, raw)
			}
			return nil, nil, fmt.Errorf("%w: msg is %d bytes encoded, up to %d with its envelope, max_message_size %d", ErrMessageTooLarge, len(raw), size, limit)
		}
	}
	i := b.counter.Add(1)
	if plain && stored {
		// Without its seq_id, which the store splices in: the store's
		// writer must not encode a message while it holds the lock.
		body, seqAt, err := appendPlainEnvelope(make([]byte, 0, len(raw)+256), full, raw, now.Unix(), msgID, i, username, gilmsg)
		putScratch(scratch, raw)
		if err != nil {
			return nil, nil, err
		}
		return &outgoing{topic: full, msgID: msgID, stored: splicedEntry(full, msgID, now.Unix(), body, seqAt)}, nil, nil
	}
	if plain {
		// Appended in key order, with no map, into a pooled buffer that
		// the publisher's goroutine hands back once the body is sent.
		bodyBuf := scratchBufs.Get().(*[]byte)
		body, _, err := appendPlainEnvelope(*bodyBuf, full, raw, now.Unix(), msgID, i, username, gilmsg)
		putScratch(scratch, raw)
		if err != nil {
			return nil, nil, err
		}
		return &outgoing{topic: full, msgID: msgID, body: body, bodyBuf: bodyBuf}, nil, nil
	}
	// Sized for what signing and the store add (crypto, signature,
	// certificate, seq_id): growing past 8 keys would copy the map.
	fields = make(map[string]any, envelopeKeys)
	fields[fieldTopic] = full
	fields[fieldMsg] = canonicalText(raw)
	fields[fieldTimestamp] = json.Number(strconv.FormatInt(now.Unix(), 10))
	fields[fieldMsgID] = msgID
	fields[fieldI] = json.Number(strconv.FormatInt(i, 10))
	fields[fieldUsername] = username
	if gilmsg {
		fields[fieldGilmsgVersion] = ProtocolVersion
	}
	return nil, fields, nil
}

// envelopeKeys is the most keys an envelope this package sends has.
const envelopeKeys = 11

// envelopeBytes bounds what an envelope adds to its msg, but for the
// topic, msg_id, username and signature: keys, quotes, numbers.
const envelopeBytes = 512

// jsonTextBytes bounds the length of s as canonical JSON writes it: a
// byte that is not printable ASCII, or is a quote or backslash, in at
// most 6 bytes (\uXXXX).
func jsonTextBytes(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			n += 5
		}
	}
	return n
}

// envelopeBytes bounds what the envelope of a msg on topic adds to it,
// signed when sign is set, so that Publish can refuse a message whose
// body would be over max_message_size before it is signed or stored.
func (b *Bus) envelopeBytes(topic, msgID, username string, sign bool) int64 {
	n := int64(envelopeBytes + jsonTextBytes(topic) + jsonTextBytes(msgID) + jsonTextBytes(username))
	if sign {
		if s, err := b.getSigner(); err == nil {
			n += s.envelopeBytes()
		}
	}
	return n
}

// seal signs (when sign is set) and encodes an envelope that is not
// stored.
func (b *Bus) seal(fields map[string]any, sign bool) (*outgoing, error) {
	return b.sealInto(nil, fields, sign)
}

// sealInto is seal encoding into buf, a pooled buffer (nil: a new one),
// for a message that is sent once: the send hands buf back to the pool.
func (b *Bus) sealInto(buf *[]byte, fields map[string]any, sign bool) (*outgoing, error) {
	if sign {
		s, err := b.getSigner()
		if err != nil {
			return nil, err
		}
		if err := s.Sign(fields); err != nil {
			return nil, err
		}
	}
	// Sized like the last signed body: the certificate alone outgrows
	// MarshalCanonical's first guess, and each growth copies the text.
	var into []byte
	if buf != nil {
		into = (*buf)[:0]
	}
	if want := int(max(512, b.pub.bodyCap.Load())); cap(into) < want {
		into = make([]byte, 0, want)
	}
	body, err := AppendCanonical(into, fields)
	if err != nil {
		return nil, err
	}
	b.pub.bodyCap.Store(int64(len(body)))
	topic, _ := fields[fieldTopic].(string)
	msgID, _ := fields[fieldMsgID].(string)
	return &outgoing{topic: topic, msgID: msgID, body: body, bodyBuf: buf}, nil
}

func (b *Bus) fullTopic(topic, modname string) string {
	if strings.HasPrefix(topic, b.cfg.TopicPrefix) {
		return topic
	}
	slot := &b.topics[maphash.String(topicSeed, topic)%uint64(len(b.topics))]
	if m := slot.Load(); m != nil && m.topic == topic && m.modname == modname {
		return m.full
	}
	m := &topicMemo{topic: topic, modname: modname}
	if modname == "" {
		modname = b.modname
	}
	if topic == "" {
		topic = "unspecified"
	}
	m.full = b.cfg.TopicPrefix + "." + b.cfg.Environment + "." + modname + "." + topic
	slot.Store(m)
	return m.full
}

// topicMemo is one of [Bus.fullTopic]'s answers, kept so that publishing
// on the same few topics builds no string each time.
type topicMemo struct{ topic, modname, full string }

var topicSeed = maphash.MakeSeed()

// newMsgID makes a msg_id as fedmsg does: the year, a dash and a random
// (version 4) UUID, in one allocation.
func newMsgID(now time.Time) string {
	var u [16]byte
	rand.Read(u[:]) // never fails (crypto/rand)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var buf [48]byte
	b := strconv.AppendInt(buf[:0], int64(now.Year()), 10)
	b = append(b, '-')
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

// send queues one message on the PUB socket's goroutine. An active
// publisher first waits, up to the config's timeout, for the relay.
func (b *Bus) send(ctx context.Context, out *outgoing) error {
	return b.sendWithin(ctx, out, b.cfg.TimeoutDuration())
}

// sendWithin is send with the wait for the relay bounded by relayWait
// (0: by ctx alone).
func (b *Bus) sendWithin(ctx context.Context, out *outgoing, relayWait time.Duration) error {
	return b.sendOn(ctx, out, relayWait, b.closed)
}

// sendOn is sendWithin with a wait for room on the socket ended by
// busClosed (nil: by ctx alone).
func (b *Bus) sendOn(ctx context.Context, out *outgoing, relayWait time.Duration, busClosed <-chan struct{}) error {
	if err := b.awaitRelay(ctx, relayWait); err != nil {
		return err
	}
	if err := b.pub.enqueue(ctx, busClosed, out); err != nil {
		return err
	}
	b.stats.published.Add(1)
	b.opts.hooks.messageOut(out.topic)
	if b.log.Enabled(ctx, slog.LevelDebug) { // its attributes would cost two allocations
		b.log.Debug("gilmsg: published", slog.String("topic", out.topic), slog.String("msg_id", out.msgID))
	}
	return nil
}

// awaitRelay makes an active publisher wait, up to bound (0: until ctx
// ends), while no relay is connected, and then fail loudly: ZeroMQ's PUB
// would otherwise drop the message without a word. A relay restarted
// within the bound is bridged: the socket reconnects by itself.
func (b *Bus) awaitRelay(ctx context.Context, bound time.Duration) error {
	mon := b.pub.mon
	if mon == nil || mon.Connected() > 0 {
		return nil
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if bound > 0 {
		wctx, cancel = context.WithTimeout(ctx, bound)
	} else if _, ok := ctx.Deadline(); !ok {
		wctx, cancel = context.WithTimeout(ctx, b.opts.readyTimeout)
	}
	defer cancel()
	wctx, stop := b.withClose(wctx)
	defer stop()
	start := time.Now()
	if err := mon.WaitConnected(wctx, 1); err != nil {
		if b.isClosed() {
			return ErrClosed
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		return fmt.Errorf("%w: no relay at %s within %v", ErrNotConnected, b.pub.endpoint, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// relayConnected is false only for an active publisher whose relay is
// away; a resend then waits for the reconnection, which it will see.
func (b *Bus) relayConnected() bool {
	return b.pub.mon == nil || b.pub.mon.Connected() > 0
}

// postInitWait is how long after the bind the first publishes wait (see
// [WithoutPostInitWait]). The floor of zmq_reconnect_ivl_max plus
// zmq_reconnect_ivl was measured: a Python tail running for seconds got 48
// to 50 of 50 messages from a Python publisher, 0 to 35 from a Go one that
// waited only post_init_sleep.
func postInitWait(c *Config) time.Duration {
	ivl := time.Duration(max(c.ZMQReconnectIvl, 0)) * time.Millisecond
	retry := ivl
	if c.ZMQReconnectIvlMax > 0 {
		retry = time.Duration(c.ZMQReconnectIvlMax) * time.Millisecond
	}
	return max(seconds(c.PostInitSleep), retry+ivl)
}

// warmUp makes a publish that comes before [postInitWait] has passed since
// the bind wait for it ([WithoutPostInitWait]). With ackTopic set (an
// ACK's own topic), the wait ends as soon as someone subscribes to it: the
// publisher waiting for this ACK.
func (b *Bus) warmUp(ctx context.Context, ackTopic string) error {
	return b.warmUpUntil(ctx, ackTopic, b.closed)
}

// warmUpUntil is warmUp ended by busClosed instead of the bus's closing.
func (b *Bus) warmUpUntil(ctx context.Context, ackTopic string, busClosed <-chan struct{}) error {
	p := b.pub
	if p == nil || p.warm.Load() {
		return nil
	}
	wait := time.Until(p.warmAt)
	if wait <= 0 {
		p.warm.Store(true)
		return nil
	}
	warmed := true
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline)*9/10 < wait {
		// The wait is a courtesy to slow joiners: a caller's deadline cuts
		// it short (leaving time to send) rather than fail the publish.
		wait, warmed = max(time.Until(deadline)*9/10, 0), false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var kick <-chan time.Time
	if ackTopic != "" {
		// Subscriptions are read when the publisher's goroutine wakes.
		k := time.NewTicker(publisherWaitTick)
		defer k.Stop()
		kick = k.C
	}
	for {
		changed := p.subs.Changed()
		if ackTopic != "" && p.subs.Matching(ackTopic) > 0 {
			return nil
		}
		select {
		case <-t.C:
			if warmed {
				p.warm.Store(true)
			}
			return nil
		case <-changed:
		case <-kick:
			p.wake()
		case <-ctx.Done():
			return b.ctxErr(ctx)
		case <-busClosed:
			return ErrClosed
		}
	}
}

// publisher owns the bus's publishing socket: one goroutine sends what
// Publish, ACKs and resends queue, and reads the subscriptions the socket
// reports. A message published while nothing is queued and the goroutine
// is not using the socket is sent by its caller instead (enqueue). The
// socket is an XPUB, which subscribers cannot tell from a PUB (Python
// peers included), so that the bus knows who is subscribed
// ([Bus.WaitSubscribers]) instead of sleeping for slow joiners.
//
// The goroutine waits on a Go channel, not in zmq_poll: a message to send
// then costs a channel send instead of a wake-up through ZeroMQ and a
// thread switch. Subscriptions are read at every wake-up and on a slow
// tick; WaitSubscribers kicks the goroutine often while it waits.
type publisher struct {
	sock     *zmq.Socket
	handle   unsafe.Pointer // socketHandle(sock)
	fan      *zsock.Fanout  // sends on sock; see newXPub
	room     *readyPoller   // watches sock: fan waits for room in it; nil without fan or outside Linux
	subs     *subscriptionTracker
	mon      *connMonitor // active publishers only: is the relay there?
	endpoint string
	log      *slog.Logger
	stats    *stats

	// slots bounds the queue: Publish blocks (within its ctx) when the
	// socket's goroutine falls behind, rather than queue without limit.
	slots chan struct{}
	kick  chan struct{} // one pending wake-up at most

	// The first publishes wait until warmAt (see [Bus.warmUp]); warm is
	// set once nobody needs to any more.
	warmAt time.Time
	warm   atomic.Bool

	payloadCap atomic.Int64 // the size of the last payload prepare encoded
	bodyCap    atomic.Int64 // and of the last signed body

	// sending is held by whoever uses the socket: the goroutine, from
	// taking the queue until its batch is sent, or a Publish that found
	// the queue empty and sends its message itself (see enqueue).
	sending sync.Mutex

	mu     sync.Mutex
	queue  []*outgoing
	closed bool
	done   chan struct{}
}

// Tick intervals of the publisher's goroutine: idle, it still lets libzmq
// process its commands (new subscribers) and reads subscriptions; while
// someone waits for subscribers, it looks far more often.
const (
	publisherIdleTick = 50 * time.Millisecond
	publisherWaitTick = time.Millisecond
)

func (b *Bus) startPublisher() (_ *publisher, err error) {
	sock, fan, err := newXPub(b.zctx, b.sockOpts(), 0, b.log, "publisher")
	if err != nil {
		return nil, err
	}
	p := &publisher{sock: sock, handle: socketHandle(sock), fan: fan, subs: newSubscriptionTracker(), log: b.log, stats: &b.stats,
		slots: make(chan struct{}, b.opts.queueSize), kick: make(chan struct{}, 1), done: make(chan struct{})}
	defer func() {
		if err != nil {
			if p.mon != nil {
				sock.Monitor("", 0)
				p.mon.Close()
			}
			if p.room != nil {
				p.room.close()
			}
			sock.Close()
		}
	}()
	if fan != nil && parksInNetpoller {
		if p.room, err = newReadyPoller(); err != nil {
			return nil, err
		}
		if err = p.room.add(sock, 0); err != nil {
			return nil, err
		}
		fan.ParkIn(p.room)
	}
	if b.cfg.Active {
		if p.mon, err = newConnMonitor(b.zctx, sock); err != nil {
			return nil, err
		}
		for _, addr := range b.cfg.RelayInbound {
			if err := sock.Connect(addr); err != nil {
				return nil, &ConfigError{Key: "relay_inbound", Err: fmt.Errorf("connect %s: %w", addr, err)}
			}
		}
		p.endpoint = strings.Join(b.cfg.RelayInbound, ",")
	} else if p.endpoint, err = bindFirst(sock, b.cfg.Name, b.cfg.Endpoints[b.cfg.Name]); err != nil {
		return nil, err
	}
	p.warmAt = time.Now().Add(postInitWait(b.cfg))
	p.warm.Store(!b.opts.postInitWait || b.cfg.PostInitSleep <= 0)
	go p.run()
	return p, nil
}

func (p *publisher) run() {
	defer close(p.done)
	tick := time.NewTicker(publisherIdleTick)
	defer tick.Stop()
	var batch []*outgoing
	for {
		p.sending.Lock()
		p.mu.Lock()
		batch, p.queue = p.queue, batch[:0]
		closed := p.closed
		p.mu.Unlock()
		for i, out := range batch {
			p.sendOne(out)
			batch[i] = nil
			<-p.slots
		}
		p.readSubscriptions()
		if closed {
			break
		}
		p.sending.Unlock()
		select {
		case <-p.kick:
		case <-tick.C:
		}
	}
	// Still holding sending: a Publish from now on sees closed.
	p.subs.close()
	if p.mon != nil {
		p.sock.Monitor("", 0)
		p.mon.Close()
	}
	if p.room != nil {
		p.room.close() // before the socket, whose ZMQ_FD it watches
	}
	p.sock.Close()
	p.sending.Unlock()
}

// sendOne sends out on the socket; the caller holds sending. A full
// subscriber makes it wait, up to zmq_send_wait (see newXPub).
func (p *publisher) sendOne(out *outgoing) {
	// Called directly, not through a method value, which would move the
	// closure to the heap for every message.
	send := func(block bool) error { return send2(p.sock, p.handle, out.topic, out.body, block) }
	var err error
	if out.noWait {
		err = p.fan.SendPast(send)
	} else {
		err = p.fan.Send(send)
	}
	if err != nil {
		p.stats.sendErrors.Add(1)
		p.log.Error("gilmsg: send failed", slog.String("topic", out.topic), slog.String("msg_id", out.msgID), slog.Any("error", err))
	}
	if out.bodyBuf != nil { // zmq_send copied it
		putScratch(out.bodyBuf, out.body)
	}
	if out.sent != nil {
		select { // resends send out again; sendOne's callers hold sending
		case <-out.sent:
		default:
			close(out.sent)
		}
	}
}

// readSubscriptions hands what subscribers sent the socket to subs; the
// caller holds sending.
func (p *publisher) readSubscriptions() {
	if err := readSubscriptions(p.sock, p.subs); err != nil {
		p.log.Error("gilmsg: reading subscriptions", slog.Any("error", err))
	}
}

// wake makes the goroutine look at its queue (and subscriptions) soon.
func (p *publisher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *publisher) enqueue(ctx context.Context, busClosed <-chan struct{}, out *outgoing) error {
	if p.sending.TryLock() {
		// Nothing queued and the socket free: send from here, which saves
		// waking the goroutine and waiting for it (a reliable publish
		// waits for that twice, once for its message and once for the
		// ACK). Messages queued earlier have all left: the goroutine
		// holds sending from taking the queue until they are sent.
		p.mu.Lock()
		idle, closed := len(p.queue) == 0, p.closed
		p.mu.Unlock()
		if idle && !closed {
			p.sendOne(out)
		}
		p.sending.Unlock()
		if closed {
			return ErrClosed
		}
		if idle {
			return nil
		}
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-busClosed:
		return ErrClosed
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return ErrClosed
	}
	p.queue = append(p.queue, out)
	p.mu.Unlock()
	p.wake()
	return nil
}

// close lets the goroutine send what is queued, then close the socket
// (whose linger bounds how long unsent messages are kept).
func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.fan.Stop() // a send waiting for a stuck subscriber goes past it
	p.wake()
	<-p.done
}

// WaitSubscribers waits until at least n subscriptions would receive a
// message published now on topic (a topic as given to Publish), or ctx
// ends. It is the exact answer to ZeroMQ's slow-joiner problem for this
// bus's own socket: once it returns nil, those subscribers get every
// message published after it. It cannot tell who the subscribers are.
// Once it has returned nil, no publish waits for post_init_sleep any more
// ([WithoutPostInitWait]).
func (b *Bus) WaitSubscribers(ctx context.Context, topic string, n int) error {
	if b.pub == nil {
		return fmt.Errorf("%w: the bus has no endpoint to publish from", ErrConfig)
	}
	ctx, cancel := b.withClose(ctx)
	defer cancel()
	go func() {
		// Subscriptions are read when the publisher's goroutine wakes.
		t := time.NewTicker(publisherWaitTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.pub.wake()
			}
		}
	}()
	err := b.pub.subs.WaitMatching(ctx, b.fullTopic(topic, ""), n)
	if err != nil && b.isClosed() {
		return ErrClosed
	}
	if err == nil {
		// The caller waited its own way: the first publish need not.
		b.pub.warm.Store(true)
	}
	return err
}

// Subscribers returns how many subscriptions would receive a message
// published now on topic, as last read from the socket (at most a few tens
// of milliseconds ago).
func (b *Bus) Subscribers(topic string) int {
	if b.pub == nil {
		return 0
	}
	return b.pub.subs.Matching(b.fullTopic(topic, ""))
}
