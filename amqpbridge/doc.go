// Package amqpbridge joins a fedmsg bus to an AMQP 0-9-1 broker such as
// RabbitMQ, both ways, in fedora-messaging's form (WIRE.md §14), as
// Fedora's fedmsg-migration-tools did while Fedora moved from fedmsg to
// fedora-messaging. It lives apart from package gilmsg so that users of
// the bus do not pull in an AMQP client; "gilmsg bridge" runs it.
//
// # Bus to broker
//
// [ZmqToAMQP] subscribes to the bus, lets it validate, and publishes each
// message ([ToAMQP]) on a durable topic exchange it declares (default
// zmq.topic) with publisher confirms: routing key = topic, body = the
// JSON of msg, message_id = msg_id, persistent, content type
// application/json, headers fedora_messaging_schema base.message, sent-at
// and fedora_messaging_severity 20. Messages without a JSON object msg,
// gilmsg ACKs, and what amqp-to-zmq published are not carried.
//
// It is a gilmsg recipient under its bus's certificate and ACKs a reliable
// message only once the broker has confirmed it: a publisher that lists
// the bridge among its recipients learns that the message is in the
// broker, or times out. A confirm means the broker took the message; one
// routed to no queue is confirmed and dropped by the broker, as for any
// AMQP publisher.
//
// # Broker to bus
//
// [AMQPToZmq] consumes from a durable queue bound to an exchange (default
// amq.topic) and publishes each message ([FromAMQP]) as a new envelope
// signed by its bus's certificate: topic = routing key, msg = body (decoded
// under its content_encoding as fedora-messaging decodes it, [FromAMQP]),
// msg_id = message_id ("<year>-" prefixed unless it starts with one),
// username amqp-bridge. It acks a delivery after the bus publish, or,
// with [Config.Recipients], after they have ACKed; otherwise it nacks and
// the broker delivers the message again under the same msg_id, which
// subscribers drop as a duplicate. Bad deliveries are logged with their
// reason and rejected without requeue.
//
// # Loops
//
// The two directions use different exchanges ([Config.Validate] refuses
// one exchange both ways); zmq-to-amqp drops envelopes whose username is
// amqp-bridge; amqp-to-zmq drops deliveries carrying [OriginHeader], which
// zmq-to-amqp sets, should an exchange binding route them back. A loop the
// guard stopped is logged at debug level only and counted in
// [Stats].Dropped under [ErrLoop].
//
// # Faults
//
// A lost connection is not an error: Run reconnects with backoff (100 ms
// doubling to [Config.ReconnectMax]) and resumes. zmq-to-amqp keeps the
// messages not yet confirmed (up to [Config.Window]) and publishes them
// again on the new connection; amqp-to-zmq's unacked deliveries return to
// the queue. Nothing confirmed or acked is lost; a message may be
// carried twice (at least once), with the same id each time.
//
// # Concurrency
//
// Run may be called once per bridge. Connected and Stats are safe from any
// goroutine.
package amqpbridge
