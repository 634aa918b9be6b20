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
