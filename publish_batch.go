package gilmsg

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// BatchMessage is one message of a [Bus.PublishBatch].
type BatchMessage struct {
	Topic string
	Msg   any
	// Opts apply to this message, after those given to PublishBatch.
	Opts []PublishOption
}

// PublishBatch publishes msgs in their order, as the same [Bus.Publish]
// calls made one after another from one goroutine would, but without
// waiting for each in turn: the messages are signed on every core
// (GOMAXPROCS goroutines) and, with a store ([WithStore]), stored in one
// transaction with consecutive seq_ids (a batch of more than 512 takes one
// transaction per 512), and only then sent, in order. It is for a program
// that has several messages at once, such as a logger reading lines that
// arrived together or a bridge with several deliveries in hand.
//
// A reliable publish waits for its own ACKs: a message with
// [WithRecipients] is refused with [ErrInvalidOption] (use Publish).
//
// It returns the receipts of the messages sent, in order. On an error,
// the messages from len(receipts) on were not sent: a caller that starts
// again from there repeats none and skips none. With a store, those of
// them that were stored reach subscribers through replay, as a gap.
func (b *Bus) PublishBatch(ctx context.Context, msgs []BatchMessage, opts ...PublishOption) ([]*Receipt, error) {
	if err := b.warmUp(ctx, ""); err != nil {
		return nil, err
	}
	receipts := make([]*Receipt, 0, len(msgs))
	for len(msgs) > 0 {
		n := min(len(msgs), maxStoreBatch)
		sent, err := b.publishChunk(ctx, msgs[:n], opts)
		receipts = append(receipts, sent...)
		if err != nil {
			return receipts, err
		}
		msgs = msgs[n:]
	}
	return receipts, nil
}

// publishChunk is PublishBatch for at most maxStoreBatch messages.
func (b *Bus) publishChunk(ctx context.Context, msgs []BatchMessage, opts []PublishOption) ([]*Receipt, error) {
	sign := b.cfg.SignMessages
	outs := make([]*outgoing, len(msgs))
	fields := make([]map[string]any, len(msgs))
	n, failed := len(msgs), error(nil) // only the first n can be sent
	for i, m := range msgs {
		var po pubOptions
		for _, opt := range opts {
			opt(&po)
		}
		for _, opt := range m.Opts {
			opt(&po)
		}
		if po.reliable {
			n, failed = i, fmt.Errorf("%w: message %d of a batch has recipients: a reliable message is published with Publish", ErrInvalidOption, i)
			break
		}
		var err error
		if outs[i], fields[i], err = b.envelope(m.Topic, m.Msg, &po, prepFlags{sign: sign}); err != nil {
			n, failed = i, fmt.Errorf("message %d of the batch: %w", i, err)
			break
		}
	}
	outs, fields = outs[:n], fields[:n]

	// What the store takes, it seals itself (Batch.Seal signs on every
	// core); what it does not is sealed here the same way.
	var entries []*StoreEntry
	var entryAt []int
	var unstored []int
	for i, f := range fields {
		switch {
		case f == nil:
			if e := outs[i].stored; e != nil {
				entries, entryAt = append(entries, e), append(entryAt, i)
			}
		case b.stores(f):
			e, err := b.storeEntry(f, sign)
			if err != nil {
				return nil, err
			}
			entries, entryAt = append(entries, e), append(entryAt, i)
		default:
			unstored = append(unstored, i)
		}
	}
	if k, err := b.sealAll(outs, fields, unstored, sign); err != nil {
		n, failed, outs = k, fmt.Errorf("message %d of the batch: %w", k, err), outs[:k]
	}
	for len(entryAt) > 0 && entryAt[len(entryAt)-1] >= n {
		entries, entryAt = entries[:len(entries)-1], entryAt[:len(entryAt)-1]
	}
	if len(entries) > 0 {
		if err := b.storeW.add(ctx, b.closed, entries...); err != nil {
			return nil, err
		}
		for j, e := range entries {
			outs[entryAt[j]] = e.outgoing()
		}
	}

	receipts := make([]*Receipt, 0, n)
	for _, out := range outs {
		if err := b.send(ctx, out); err != nil {
			return receipts, err
		}
		receipts = append(receipts, &Receipt{Topic: out.topic, MsgID: out.msgID, SeqID: out.seqID})
	}
	return receipts, failed
}

// sealAll seals fields[i] into outs[i] for each i of which, on up to
// GOMAXPROCS goroutines. On a failure it returns the lowest index that
// failed.
func (b *Bus) sealAll(outs []*outgoing, fields []map[string]any, which []int, sign bool) (int, error) {
	errs := make([]error, len(which))
	onEveryCore(len(which), func(j int) {
		i := which[j]
		outs[i], errs[j] = b.seal(fields[i], sign)
	})
	for j, err := range errs {
		if err != nil {
			return which[j], err
		}
	}
	return 0, nil
}

// onEveryCore calls f(0) to f(n-1) on up to GOMAXPROCS goroutines, each
// taking the next index when it is done with one: a goroutine that the
// scheduler holds back (the broker, a subscriber, another process on the
// same cores) leaves its share to the others instead of making the whole
// batch wait for it, as a fixed share each did (sealing a batch kept the
// goroutines busy 87-92 % of its time, 93-95 % this way, in the bridge's
// bench under load).
func onEveryCore(n int, f func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := int(next.Add(1) - 1); j < n; j = int(next.Add(1) - 1) {
				f(j)
			}
		}()
	}
	wg.Wait()
}

// SealedMessage is a message built, signed and encoded by [Bus.Seal], for
// [Bus.SendSealed] to send.
type SealedMessage struct {
	bus   *Bus
	out   *outgoing   // ready to send; nil when the store seals it
	entry *StoreEntry // with a store: the seq_id, and the signature over it, come in SendSealed
	taken atomic.Bool // SendSealed has it
}

// MsgID is the message's msg_id.
func (m *SealedMessage) MsgID() string {
	if m.entry != nil {
		return m.entry.MsgID
	}
	return m.out.msgID
}

// Seal does what [Bus.Publish] does before a message leaves (builds its
// envelope, signs it, encodes it) and returns it for [Bus.SendSealed]. It
// is for a program that signs on several goroutines at once and sends in
// an order of its own, as the AMQP bridge signs deliveries while it sends
// those signed before. Seal is safe for use by many goroutines and never
// blocks; messages are sent in the order SendSealed is given them.
//
// On a bus with a store ([WithStore]) the signature covers the seq_id
// that the store gives when it stores the message: Seal then only builds
// the envelope, and SendSealed signs (on every core, as PublishBatch).
//
// A reliable publish waits for its own ACKs: a message with
// [WithRecipients] is refused with [ErrInvalidOption] (use Publish).
func (b *Bus) Seal(topic string, msg any, opts ...PublishOption) (*SealedMessage, error) {
	m, fields, err := b.sealStart(topic, msg, opts)
	if fields == nil {
		return m, err
	}
	return b.sealFinish(fields, b.cfg.SignMessages)
}

// SealEach does what [Bus.Seal] does for each of msgs, on the calling
// goroutine, with their signatures made in one call into libcrypto:
// ms[i] and errs[i] are msgs[i]'s. A signature takes a few hundred
// microseconds in libcrypto, and Go's scheduler takes the P of a goroutine
// in such a call back for other goroutines; the goroutine must find one
// again when it returns. One call for many signatures does that once.
// The AMQP bridge's signers seal the deliveries in hand so.
func (b *Bus) SealEach(msgs []BatchMessage) (ms []*SealedMessage, errs []error) {
	ms, errs = make([]*SealedMessage, len(msgs)), make([]error, len(msgs))
	var which []int
	var fields []map[string]any
	for i, u := range msgs {
		m, f, err := b.sealStart(u.Topic, u.Msg, u.Opts)
		if f == nil {
			ms[i], errs[i] = m, err
			continue
		}
		which, fields = append(which, i), append(fields, f)
	}
	if len(fields) > 0 && b.cfg.SignMessages {
		s, err := b.getSigner()
		var signErrs []error
		if err == nil {
			signErrs = s.signEach(fields)
		}
		for j, i := range which {
			if err != nil {
				errs[i] = err
			} else {
				errs[i] = signErrs[j]
			}
		}
	}
	for j, i := range which {
		if errs[i] == nil {
			ms[i], errs[i] = b.sealFinish(fields[j], false)
		}
	}
	return ms, errs
}

// sealStart is Seal up to the signature: a message that is done with
// (sealed without a signature of its own, or refused) comes back as m or
// err, one still to sign and encode as fields.
func (b *Bus) sealStart(topic string, msg any, opts []PublishOption) (m *SealedMessage, fields map[string]any, err error) {
	po := pubOptionsOf(opts)
	if po.reliable {
		return nil, nil, fmt.Errorf("%w: a message with recipients is published with Publish", ErrInvalidOption)
	}
	sign := b.cfg.SignMessages
	out, fields, err := b.envelope(topic, msg, &po, prepFlags{sign: sign})
	switch {
	case err != nil:
		return nil, nil, err
	case fields == nil && out.stored != nil:
		return &SealedMessage{bus: b, entry: out.stored}, nil, nil
	case fields == nil:
		// Its pooled buffer would go back to the pool at the send, while
		// the caller may still hold the message.
		out.bodyBuf = nil
		return &SealedMessage{bus: b, out: out}, nil, nil
	case b.stores(fields):
		e, err := b.storeEntry(fields, sign)
		if err != nil {
			return nil, nil, err
		}
		return &SealedMessage{bus: b, entry: e}, nil, nil
	}
	return nil, fields, nil
}

// sealFinish signs fields (when sign is set) and encodes them. The
// message is sent once, and then only its msg_id is read: its body's
// buffer is pooled and goes back at the send (a tenth of what the bridge
// allocates a message, and so of its garbage collections).
func (b *Bus) sealFinish(fields map[string]any, sign bool) (*SealedMessage, error) {
	out, err := b.sealInto(scratchBufs.Get().(*[]byte), fields, sign)
	if err != nil {
		return nil, err
	}
	return &SealedMessage{bus: b, out: out}, nil
}

// SendSealed sends msgs, made by [Bus.Seal] on this bus, in their order,
// as [Bus.PublishBatch] sends its messages: with a store, they are first
// stored in one transaction (per 512) with consecutive seq_ids. It
// returns the receipts of the messages sent, in order; on an error, the
// messages from len(receipts) on were not sent (with a store, those of
// them that were stored reach subscribers through replay, as a gap). A
// message is given to SendSealed once, sent or not (to try again, Seal it
// again, under the same msg_id if it must stay one message): one given
// again, nil, or sealed by another bus fails with [ErrInvalidOption], and
// nothing from it on is sent.
func (b *Bus) SendSealed(ctx context.Context, msgs ...*SealedMessage) ([]*Receipt, error) {
	if err := b.warmUp(ctx, ""); err != nil {
		return nil, err
	}
	receipts := make([]*Receipt, 0, len(msgs))
	for len(msgs) > 0 {
		n := min(len(msgs), maxStoreBatch)
		sent, err := b.sendSealedChunk(ctx, msgs[:n])
		receipts = append(receipts, sent...)
		if err != nil {
			return receipts, err
		}
		msgs = msgs[n:]
	}
	return receipts, nil
}

// sendSealedChunk is SendSealed for at most maxStoreBatch messages.
func (b *Bus) sendSealedChunk(ctx context.Context, msgs []*SealedMessage) ([]*Receipt, error) {
	n, failed := len(msgs), error(nil)
	for i, m := range msgs {
		switch {
		case m == nil:
			n, failed = i, fmt.Errorf("%w: message %d given to SendSealed is nil", ErrInvalidOption, i)
		case m.bus != b:
			n, failed = i, fmt.Errorf("%w: message %s was sealed by another bus", ErrInvalidOption, m.MsgID())
		case !m.taken.CompareAndSwap(false, true):
			n, failed = i, fmt.Errorf("%w: message %s was given to SendSealed before", ErrInvalidOption, m.MsgID())
		default:
			continue
		}
		break
	}
	msgs = msgs[:n]
	var entries []*StoreEntry
	for _, m := range msgs {
		if m.entry != nil {
			entries = append(entries, m.entry)
		}
	}
	if len(entries) > 0 {
		if err := b.storeW.add(ctx, b.closed, entries...); err != nil {
			return nil, err
		}
	}
	receipts := make([]*Receipt, 0, n)
	for _, m := range msgs {
		out := m.out
		if m.entry != nil {
			out = m.entry.outgoing()
		}
		if err := b.send(ctx, out); err != nil {
			return receipts, err
		}
		receipts = append(receipts, &Receipt{Topic: out.topic, MsgID: out.msgID, SeqID: out.seqID})
	}
	return receipts, failed
}
