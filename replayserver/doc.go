// Package replayserver answers the replay requests of fedmsg's
// ReplayContext (WIRE.md §11) from a [gilmsg.Store]: `gilmsg
// replay-server` is this package behind flags.
//
// A publisher's process, or a process beside it, runs the server; the
// subscribers ask it for what they missed. The asking side, gap recovery,
// is part of every subscription and stays in the root package; the
// answering side is a program of its own, so it lives here, built on the
// root's exported API (Config, Store, Hooks), with the limits both sides
// keep to ([MaxReplyMessages], [MaxQueryIDs]) shared through an internal
// package.
package replayserver
