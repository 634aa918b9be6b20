// Package replaywire holds what the two ends of a replay request (WIRE.md
// §11) must agree on: the root's gap recovery, which asks, and package
// replayserver, which answers. Plain constants, so that both can import
// it: the root cannot import replayserver, which is built on the root.
package replaywire

// Limits of one replay request and reply.
const (
	// MaxReplyMessages caps the messages of one reply: the lowest seq_ids
	// that match. A reply of exactly this many may have more behind it:
	// ask again with the same request plus "after_seq_id": the last
	// seq_id received (a key of ours; Python's server has no cap).
	MaxReplyMessages = 1000
	// MaxQueryIDs caps the seq_ids or msg_ids one request may list.
	MaxQueryIDs = 10000
	// MaxRequestBytes caps the size of one request.
	MaxRequestBytes = 1 << 20
	// MaxReplyBytes caps the size of one reply, all frames together: an
	// asker refuses a larger one, and a server queues at most a few of
	// them for a client that does not read.
	MaxReplyBytes = 64 << 20
	// FullReplyBytes is where a server stops adding messages to a reply:
	// a reply that reached it may have more behind it, as one of
	// MaxReplyMessages may. No message above it is sent, so that a reply
	// stays within MaxReplyBytes.
	FullReplyBytes = MaxReplyBytes / 2
)

// Full reports whether a reply of n frames and size bytes may have more
// behind it: the asker pages on with after_seq_id.
func Full(n, size int) bool { return n >= MaxReplyMessages || size >= FullReplyBytes }

// Reply texts shared with Python's server.
const (
	// ErrPrefix starts the one frame of a refusal.
	ErrPrefix = "error: "
	// NoMatch is the refusal of a request that matched nothing.
	NoMatch = "There was no match for the given query"
	// KeyAfterSeqID is the paging key of a request.
	KeyAfterSeqID = "after_seq_id"
)
