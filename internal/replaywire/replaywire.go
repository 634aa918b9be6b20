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
)

// Reply texts shared with Python's server.
const (
	// ErrPrefix starts the one frame of a refusal.
	ErrPrefix = "error: "
	// NoMatch is the refusal of a request that matched nothing.
	NoMatch = "There was no match for the given query"
	// KeyAfterSeqID is the paging key of a request.
	KeyAfterSeqID = "after_seq_id"
)
