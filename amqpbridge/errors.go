package amqpbridge

import "errors"

// Sentinel errors. The reasons a message is not bridged ([DropError])
// unwrap to one of them.
var (
	// ErrLoop means the message came from the other direction of a
	// bridge: it would go round for ever.
	ErrLoop = errors.New("amqpbridge: would loop")
	// ErrNoPayload means a bus message has no msg, or a msg that is not a
	// JSON object (fedora-messaging bodies are objects).
	ErrNoPayload = errors.New("amqpbridge: no JSON object payload")
	// ErrNoMessageID means an AMQP message has no message_id.
	ErrNoMessageID = errors.New("amqpbridge: no message_id")
	// ErrBadBody means an AMQP body is not JSON, not a JSON object, not
	// valid in its content_encoding, or nested too deep to be a bus
	// message's msg.
	ErrBadBody = errors.New("amqpbridge: body is not a JSON object")
	// ErrBadEncoding means an AMQP message's content_encoding is not one
	// the bridge decodes (see [FromAMQP]).
	ErrBadEncoding = errors.New("amqpbridge: unknown content_encoding")
	// ErrTooLarge means an AMQP body is larger than amqp_max_body, or
	// makes a bus message larger than the bus's max_message_size.
	ErrTooLarge = errors.New("amqpbridge: body too large")
	// ErrBadTopic means a topic cannot cross: an AMQP routing key that is
	// empty, not UTF-8, or gilmsg's ACK topic (where a message signed by
	// the bridge would count as its ACK); a bus topic or msg_id longer
	// than AMQP's 255 bytes.
	ErrBadTopic = errors.New("amqpbridge: topic cannot cross")
)
