package amqpbridge

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/jsonval"
)

// BridgeUsername is the username of every envelope amqp-to-zmq publishes;
// zmq-to-amqp drops messages that carry it (WIRE.md §14's loop guard).
const BridgeUsername = "amqp-bridge"

// OriginHeader marks what zmq-to-amqp publishes; amqp-to-zmq drops
// deliveries that carry it, should an exchange binding route them back.
const OriginHeader = "x-gilmsg-bridged-from"

// maxShortString is the longest routing key or message_id AMQP carries.
const maxShortString = 255

// fedora-messaging's headers (WIRE.md §14).
const (
	headerSchema   = "fedora_messaging_schema"
	headerSentAt   = "sent-at"
	headerSeverity = "fedora_messaging_severity"
	severityInfo   = 20
)

// DropError says why a message was not bridged. It unwraps to one of the
// package's sentinels ([ErrLoop], [ErrNoPayload], ...).
type DropError struct {
	MsgID  string // the fedmsg msg_id or AMQP message_id, when known
	Reason error
	Detail string
}

func (e *DropError) Error() string {
	s := e.Reason.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.MsgID != "" {
		s += " (id " + e.MsgID + ")"
	}
	return s
}

func (e *DropError) Unwrap() error { return e.Reason }

// ToAMQP turns a validated bus message into its fedora-messaging form
// (WIRE.md §14): routing key = topic, body = the JSON of msg, message_id
// = msg_id, persistent, with fedora-messaging's headers; signature,
// certificate, timestamp, i and username are left behind. It returns a
// [*DropError] for what must not cross: messages without a JSON object
// msg, messages from amqp-to-zmq (username amqp-bridge), and gilmsg's own
// ACKs, which only mean something on the bus.
func ToAMQP(m *gilmsg.Envelope) (amqp.Publishing, error) {
	if m.Username == BridgeUsername {
		return amqp.Publishing{}, &DropError{MsgID: m.MsgID, Reason: ErrLoop, Detail: "username " + BridgeUsername}
	}
	if strings.HasSuffix(m.Topic, ".gilmsg.ack") {
		return amqp.Publishing{}, &DropError{MsgID: m.MsgID, Reason: ErrLoop, Detail: "a gilmsg ACK"}
	}
	// AMQP carries both as short strings.
	if len(m.Topic) > maxShortString || len(m.MsgID) > maxShortString {
		return amqp.Publishing{}, &DropError{MsgID: m.MsgID, Reason: ErrBadTopic,
			Detail: fmt.Sprintf("topic or msg_id longer than AMQP's %d bytes", maxShortString)}
	}
	if _, ok := m.Msg().(map[string]any); !ok {
		detail := "no msg field"
		if _, present := m.Field("msg"); present {
			detail = fmt.Sprintf("msg is %T", m.Msg())
			if m.Msg() == nil {
				detail = "msg is null"
			}
		}
		return amqp.Publishing{}, &DropError{MsgID: m.MsgID, Reason: ErrNoPayload, Detail: detail}
	}
	body, err := gilmsg.MarshalCanonical(m.Msg())
	if err != nil {
		return amqp.Publishing{}, &DropError{MsgID: m.MsgID, Reason: ErrNoPayload, Detail: err.Error()}
	}
	sent := time.Unix(m.Timestamp, 0).UTC()
	if m.Timestamp == 0 {
		sent = time.Now().UTC()
	}
	return amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Persistent,
		MessageId:       m.MsgID,
		Timestamp:       sent,
		Headers: amqp.Table{
			headerSchema:   "base.message",
			headerSentAt:   sent.Format("2006-01-02T15:04:05+00:00"),
			headerSeverity: int32(severityInfo),
			OriginHeader:   "zmq",
		},
		Body: body,
	}, nil
}

// Incoming is an AMQP message as amqp-to-zmq republishes it.
type Incoming struct {
	Topic string         // the routing key
	MsgID string         // the message_id, "<year>-" prefixed when it lacks one
	Msg   map[string]any // the body
}

// FromAMQP checks a delivery and maps it to the bus (WIRE.md §14). It
// decodes the body under its content_encoding as fedora-messaging does
// (utf-8 when absent; also ascii, latin-1, cp1252 and utf-16, under any
// name Python knows them by). It returns a [*DropError] for a body larger
// than maxBody, another content_encoding ([ErrBadEncoding]), a body not
// valid in its encoding, not JSON or not an object, a delivery without
// message_id, a routing key that cannot be a bus topic (empty, not UTF-8,
// gilmsg's ACK topic), and one that zmq-to-amqp published (a loop).
func FromAMQP(d *amqp.Delivery, maxBody int, now time.Time) (*Incoming, error) {
	id := d.MessageId
	if _, ok := d.Headers[OriginHeader]; ok {
		return nil, &DropError{MsgID: id, Reason: ErrLoop, Detail: "published by zmq-to-amqp (" + OriginHeader + " header)"}
	}
	if len(d.Body) > maxBody {
		return nil, &DropError{MsgID: id, Reason: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, amqp_max_body is %d", len(d.Body), maxBody)}
	}
	if id == "" {
		return nil, &DropError{Reason: ErrNoMessageID, Detail: "routing key " + strconv.Quote(d.RoutingKey)}
	}
	if !utf8.ValidString(id) {
		return nil, &DropError{MsgID: strconv.Quote(id), Reason: ErrNoMessageID, Detail: "message_id is not UTF-8"}
	}
	switch key := d.RoutingKey; {
	case key == "":
		return nil, &DropError{MsgID: id, Reason: ErrBadTopic, Detail: "none"}
	case !utf8.ValidString(key):
		return nil, &DropError{MsgID: id, Reason: ErrBadTopic, Detail: "not UTF-8"}
	case strings.HasSuffix(key, ".gilmsg.ack"):
		// Signed by the bridge, it would count as the bridge's ACK of
		// whatever msg_id the body names: a false positive for anyone
		// waiting on zmq-to-amqp under the same certificate.
		return nil, &DropError{MsgID: id, Reason: ErrBadTopic, Detail: strconv.Quote(key) + " is gilmsg's ACK topic"}
	}
	text, err := decodeBody(d.Body, d.ContentEncoding, id)
	if err != nil {
		return nil, err
	}
	v, err := gilmsg.DecodeJSON(text)
	if err != nil {
		return nil, &DropError{MsgID: id, Reason: ErrBadBody, Detail: err.Error()}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &DropError{MsgID: id, Reason: ErrBadBody, Detail: fmt.Sprintf("a JSON %s", jsonval.Kind(v))}
	}
	if !hasYearPrefix(id) {
		id = strconv.Itoa(now.Year()) + "-" + id
	}
	return &Incoming{Topic: d.RoutingKey, MsgID: id, Msg: obj}, nil
}

// hasYearPrefix reports whether id starts with four digits and a dash, as
// fedmsg's msg_ids do.
func hasYearPrefix(id string) bool {
	if len(id) < 5 || id[4] != '-' {
		return false
	}
	for i := range 4 {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}
