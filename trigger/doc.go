// Package trigger runs an action, such as a shell command, for the
// messages of a bus that match, as fedmsg-trigger does: `gilmsg trigger`
// is this package behind flags.
//
// It is an operator program built on the root package's API, not part of
// that API: a service that publishes and tails has no use for it, so it
// stays out of the root's documentation and build. It reads any
// iter.Seq2[*gilmsg.Message, error], such as [gilmsg.Bus.Tail] or
// [gilmsg.Subscription.Messages] yield, so it runs as well on a fixed list
// of messages (see the example).
package trigger
