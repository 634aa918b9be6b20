// Package gilmsg makes a Go program a peer on a fedmsg bus: it publishes,
// subscribes, signs, validates and relays messages that the Python fedmsg
// 1.1.7 processes on the same bus cannot tell from their own, and it adds
// gilmsg's reliable publishing, in which named recipients acknowledge each
// message.
//
// A [Bus] is one process's place on the bus. Make it with [New] from a
// [Config], usually loaded from fedmsg's own files by [LoadConfig]:
//
//	cfg, err := gilmsg.LoadConfig()
//	...
//	bus, err := gilmsg.New(cfg)
//	...
//	defer bus.Close()
//
//	// Fire and forget, like fedmsg.publish.
//	bus.Publish(ctx, "user.login", map[string]any{"user": "alice"})
//
//	// Like fedmsg.tail_messages.
//	for m, err := range bus.Tail(ctx, "org.example.prod.web.") { ... }
//
//	// Like gilmsg.publish: returns once billing01 has ACKed.
//	bus.Publish(ctx, "order.created", order, gilmsg.WithRecipients("billing01"))
//
// [Init], [Publish], [TailMessages] and [Destroy] do the same on one
// default bus, for code that mirrors fedmsg's module functions.
//
// # Wire format
//
// Messages travel over ZeroMQ PUB/SUB as two frames, the full topic and a
// JSON body, exactly as fedmsg sends them. The full topic is
// <topic_prefix>.<environment>.<modname>.<topic>; the body is an
// [Envelope]: topic, msg (the payload), timestamp, msg_id, i, username, the
// signature fields, and gilmsg_version on reliable messages. Fields this
// package does not know are kept ([Envelope.Fields]) because the signature
// covers them.
//
// A bus named in the configuration binds the first free address of its
// endpoints; an active one ([Config.Active]) connects to relay_inbound
// instead, and a [Relay] forwards what arrives there to relay_outbound.
// Subscribers connect to every endpoint of every name. A bus publishes
// from an XPUB socket, which subscribers, Python ones included, cannot tell
// from a PUB; it lets [Bus.WaitSubscribers] say when a subscriber is really
// listening, and a reliable publish see who subscribed after it sent.
//
// # Slow joiners
//
// ZeroMQ drops what a publisher sends before a subscriber has connected,
// and fedmsg.init sleeps post_init_sleep after binding for that. [New]
// does not sleep; the first publishes wait instead, as
// [WithoutPostInitWait] explains.
//
// # Signing
//
// With sign_messages set, each message is signed as fedmsg's x509 backend
// signs: RSA PKCS#1 v1.5 over SHA-1 of the canonical JSON of the message
// ([MarshalCanonical]: Python's json.dumps with sorted keys and no spaces,
// reproduced byte for byte, floats and escapes included). The key and
// certificate are <ssldir>/<certname>.key and .crt, with the certname
// looked up in certnames. [Signer] does the signing; package
// github.com/gilmsg/gilmsg-go/devpki makes a throwaway CA and certificates
// for tests and demos.
//
// With crypto_backend "gpg", messages are signed as fedmsg's gpg backend
// signs: a detached OpenPGP signature over the canonical JSON of msg alone,
// with the key gpg_signing_key (else gpg_keys[<short hostname>]) from
// gpg_home ([LoadGPGSigner]). Readers that list "gpg" in
// crypto_validate_backends verify such messages against the public keys of
// gpg_home, refuse expired and revoked keys, and name the signer through
// gpg_keys, so routing policy and ACK recipients work as with x509.
//
// Received messages are checked by a [Validator] when validate_signatures
// is set (the default): the certificate must chain to the CA, be within its
// validity period and not be on the CRL; the signature must verify; and the
// routing policy must allow the certificate's CN on the topic. CA and CRL
// may be files or https:// URLs, and are read again when a check fails, so
// a rotated CRL takes effect. A message that fails is skipped, or yielded
// with its [ValidationError] under [WithInvalidMessages]; [ReasonOf] classifies
// the failure and [Bus.Stats] counts them.
//
// # Reliability
//
// [Bus.Publish] with [WithRecipients] is gilmsg's reliable publish. The message
// carries gilmsg_version (added before signing, so it validates), and every
// subscriber that yields it publishes a signed ACK naming its msg_id on
// <topic_prefix>.<environment>.gilmsg.ack. Publish returns when each
// recipient, identified by the CN of the certificate that signed its ACK,
// has ACKed; otherwise it fails, after the [WithAckTimeout] (default
// ack_timeout; unset, 2 s: see [Config.AckTimeoutDuration]) or when ctx
// ends, with an [*AckTimeoutError] that lists who ACKed and who did not,
// and matches [ErrAckTimeout]. ACKs are judged by who signed them
// (validate_signed_by), never by routing_policy, so routing_nitpicky needs
// no policy entry for the ACK topic.
//
// An ACK counts only for the message whose msg_id it names and only when
// signed by a recipient, so a timeout may be a false negative (an ACK lost
// on its way back) but success is never a false positive. Python gilmsg
// consumers process every copy they get, so the publisher sends the same
// signed bytes again only for a recipient that is late by its own recent
// ACK delays, and only when the copy may now reach it: when a subscription
// matching the topic reaches its XPUB after the send (a recipient not
// subscribed yet, or reconnected), or as a slow fallback well after the
// usual ACK time ([WithResendDelays]). The new subscriptions that Python gilmsg
// publishers open for every publish send nothing to a healthy recipient. Go
// subscribers drop any duplicate (and ACK it again), so the application
// sees each message once. An active publisher waits, within the ACK
// timeout (or timeout, for a plain publish), for a relay that is
// restarting. [Bus.PublishAsync] runs reliable publishes concurrently, up
// to [WithMaxInFlight].
//
// ACKs are read by the bus's ACK listener, one subscription to the ACK
// topic that the first reliable publish starts. It connects only where
// the recipients can answer from, as the config says when it starts: the
// endpoints of every name whose signer a recipient is (certnames[<name>];
// with gpg, the gpg_keys name of the name or of its host, as in
// "<service>.<host>"), and relay_outbound, through which active
// recipients answer. A recipient that no name signs as is listened for on
// every endpoint. The first publish to a recipient the listener does not
// cover yet connects to its endpoints and waits until they are up,
// bounded by [WithReadyTimeout], before it sends, so that the ACK finds
// the listener there.
//
// On the receiving side, the ACK point is chosen explicitly:
//   - by default [Bus.Tail] and [Subscription.Next] ACK each valid gilmsg
//     message as they yield it, as Python gilmsg does: the ACK says
//     "received";
//   - with [WithManualAck] the application calls [Message.AckAsync] once
//     it has handled the message (written, stored, processed), and not for
//     those it drops: the ACK says "handled". AckAsync hands the ACK to
//     the subscription's signer goroutines, as the ACKs of the first
//     case are; [Message.Ack] signs and sends it on the caller's
//     goroutine and returns its error;
//   - [Bus.RunConsumers] serves hub-style [Consumer] values; with
//     [WithAckAfterConsume] the ACK waits until every matching consumer has
//     returned nil, and a message no consumer matches is not ACKed.
//
// A message that failed validation is never ACKed, nor are messages
// without gilmsg_version, nor ACKs.
//
// # Replay and catch-up
//
// ACKs tell a publisher who missed a message; replay (WIRE.md §11) gets
// it to them. A bus with a [Store] (persistent_store, "sqlite:///ABS/PATH"
// or "postgresql://...", opened by [New] when the program imports
// _ "github.com/gilmsg/gilmsg-go/sqlstore", which keeps fedmsg's own table,
// shared with Python; or one given with [WithStore]) takes each message's seq_id from
// the store, signs it with it, and stores it before sending it;
// concurrent publishes share a transaction. A replay server (package
// replayserver, gilmsg replay-server) answers replay requests for one name
// from the store.
//
// A subscription tracks the last seq_id of each publisher name listed in
// replay_endpoints: it drops copies at or below it, and on a jump asks
// that name's server for the missing seq_ids ([WithReplayTimeout], default
// timeout), yielding them in order, validated and ACKed like live
// messages, then the live one, each once. What cannot be had is yielded
// as a [*GapError] (matching [ErrGap]) and the subscription goes on.
// With [WithCheckpoint] (a file named after the subscription in
// status_directory, as gilmsg tail --name and [Bus.RunConsumers] use it)
// or [WithStatusFile] the last seq_ids survive a restart, and the
// subscription first yields what it missed while it was down.
// [WithoutReplay] turns it off. RELIABILITY.md says what is recovered and what
// is not.
//
// # Configuration
//
// [Config] has one field per fedmsg configuration key, with the same name
// and default ([DefaultConfig]), plus modname and ack_timeout. [LoadConfig]
// reads the *.json, *.yaml, *.yml and *.toml files of /etc/fedmsg.d,
// ~/.fedmsg.d and ./fedmsg.d in fedmsg's order, then FEDMSG_<KEY>
// environment variables; JSON printed by Python's fedmsg-config loads as is.
// Python's *.py configuration files are not read. [Config.Validate], which
// [New] calls, names each unusable key in a [*ConfigError].
//
// Behaviour that has no fedmsg key is set with an [Option] to [New]:
// [WithLogger] (log/slog, warnings to [slog.Default] by default),
// [WithModname], [WithReadyTimeout], [WithoutPostInitWait],
// [WithResendDelays], [WithMaxInFlight], [WithMaxMessageSize].
//
// # Options
//
// Every package of this module names its options one way, so that a
// reader knows one at sight: a function that returns an option is
// With<Thing> ([WithRecipients], [WithCheckpoint]), or Without<Thing> when
// it turns off what is on by default ([WithoutAck], [WithoutReplay]); its
// type is Option, or <Call>Option for the call it configures
// ([PublishOption], [SubscribeOption], [RunOption], [RelayOption]). An
// option documents its default; those whose values can be out of range
// ([WithMaxInFlight], [WithMaxMessageSize], [WithRelayQueue], ...) make
// their call fail with [ErrInvalidOption] rather than change meaning. Older
// names (Recipients, Checkpoint, ...) remain as deprecated wrappers;
// MIGRATING.md lists them. TestOptionNamingRule holds the module to the rule.
//
// # Layout
//
// For the next person to work on it: the package is one flat directory of
// files, one per concern, that reads from the ground up. A file uses only
// the names declared in its own layer and in those below it, so each layer
// can be read without the ones above; TestRootFileLayers checks it, and
// its rootLayers map puts every file in a layer. From the ground up:
//
//   - errors: errors.go, the sentinels and typed errors of every layer.
//   - config: config.go (one field per fedmsg key, with its default),
//     config_load.go (the fedmsg.d files and the environment),
//     config_typo.go and config_extra.go. Plain data that every layer
//     above reads.
//   - wire: canonical.go, canonical_encode.go and canonical_decode.go
//     (Python's json.dumps, byte for byte) and envelope.go (the message
//     body, its fields and the text a signature covers).
//   - crypto: sign.go and validate.go (x509, fedmsg's default), gpg.go,
//     trust.go and crl.go (the CA, the CRL and the keyrings, read again
//     when stale) and reload.go. [Validator] is the one entry point that
//     checks a message, whichever backend signed it.
//   - transport: transport.go (ZeroMQ sockets and their options from the
//     config), xpub.go, zmqio.go (whole messages in one or two cgo calls),
//     monitor.go and netpoll_*.go (connection events, waiting in Go's
//     netpoller).
//   - bus: gilmsg.go ([Bus], [New], the options), publish.go, tail.go,
//     ack.go, ack_queue.go, ack_listener.go, resend.go, topic.go,
//     hooks.go, stats.go; store.go and store_open.go; and the recovery a subscription runs
//     (the replay client: recover.go, recover_rounds.go), reconnect.go,
//     checkpoint.go and status.go. These call each other freely: a
//     subscription runs its own recovery, a publish its own store.
//   - services, built on the bus: [Relay] (relay.go, relay_sign.go),
//     [Bus.RunConsumers] with the hub status it publishes (consumer.go,
//     hub_status.go) and default.go (fedmsg's module functions over one
//     default bus). Nothing below knows of them.
//
// What a service does not need lives beside the package, not in it: the
// operator programs (replay server, gateway, trigger, announce and the
// signing relay, datagrepper replay, hub-status reading, the development
// PKI) are packages of their own built on this one's exported API, and
// the database drivers, the AMQP bridge and Prometheus plug in from
// sqlstore, amqpbridge and cmd/gilmsg through [Store] and [Hooks]. Plumbing
// they share with this package lives in internal/. This package imports
// none of them (TestRootHasNoHeavyDeps checks its imports).
//
// # Operations
//
// [Bus.Stats] has a bus's totals; [WithHooks] reports each event as it
// happens ([Hooks]: messages in and out by topic, rejections by reason,
// ACK outcomes, resends, replay requests, store lag), which is how
// gilmsg's --metrics-addr feeds Prometheus without this package importing
// it. [Validator.Reload] reads the CA and CRL again (gilmsg's commands do
// it on SIGHUP). A hub running [Bus.RunConsumers] with
// moksha.monitoring.socket set publishes its status there, as moksha's
// hub does for fedmsg-check; package hubstatus reads it.
//
// fedmsg's other commands have library entry points too: [Relay] with
// [WithRelaySigner] (the signing step of fedmsg-signing-relay), and
// packages of their own beside this one: trigger (fedmsg-trigger),
// datagrepper (fedmsg-dg-replay), announce (fedmsg-announce and
// fedmsg-signing-relay), gateway (fedmsg-gateway, a [Relay] made with
// [WithRelaySources]).
//
// # Concurrency
//
// Every method of [Bus] is safe for use by many goroutines: [Bus.Publish],
// [Bus.PublishAsync], [Bus.Subscribe], [Bus.Tail], [Bus.WaitSubscribers]
// and [Bus.Stats] may be called at once from anywhere. The bus owns its
// ZeroMQ sockets and its own ZeroMQ context, and uses each socket from one
// goroutine at a time (a ZeroMQ socket is not goroutine-safe): the
// publishing socket is taken under a lock, by the bus's publisher
// goroutine or by a Publish that finds the send queue empty and sends its
// message from the caller's goroutine; every other socket belongs to one
// goroutine.
//
// A [Subscription] is read ([Subscription.Next], [Subscription.Messages])
// from one goroutine at a time; use one subscription per reader, or a
// [Bus.RunConsumers] loop. [Subscription.Close] and [Bus.Close] may be
// called from any goroutine, even while a read is blocked: the blocked call
// returns [ErrClosed]. Both are safe to call twice; Bus.Close returns once
// every socket and goroutine of the bus is gone, having given queued
// messages up to zmq_linger to leave.
//
// [Validator], [Signer] and [Relay] are safe for use by many
// goroutines. A [Consumer]'s Consume is never called concurrently by one
// runner.
package gilmsg
