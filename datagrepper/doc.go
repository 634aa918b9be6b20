// Package datagrepper fetches a message from datagrepper, the HTTP
// archive of a fedmsg bus, and publishes it again under a fresh envelope,
// as fedmsg-dg-replay does: `gilmsg dg-replay` is this package behind
// flags.
//
// It is an operator tool built on the root package's exported API (a
// [gilmsg.Bus] to publish on), kept out of the root because a service
// that publishes and tails has no use for it: the root's documentation
// lists what such a service needs, and no more.
package datagrepper
