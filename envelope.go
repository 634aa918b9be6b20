package gilmsg

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
)

// Envelope field names (WIRE.md §2).
const (
	fieldTopic         = "topic"
	fieldMsg           = "msg"
	fieldTimestamp     = "timestamp"
	fieldMsgID         = "msg_id"
	fieldI             = "i"
	fieldUsername      = "username"
	fieldCrypto        = "crypto"
	fieldSignature     = "signature"
	fieldCertificate   = "certificate"
	fieldGilmsgVersion = "gilmsg_version"
)

// Envelope is a fedmsg message body: the JSON object carried in frame 2.
//
// The typed fields are read from the object; Fields keeps the whole object
// as decoded, unknown keys included (replay's seq_id, ...), because the
// signature covers all of it. Decoded strings share the memory of the
// body they came from: to keep one long after the message (a msg_id in a
// set, say), keep strings.Clone of it, or the whole body stays alive.
type Envelope struct {
	Topic     string
	Msg       any // the payload as decoded by DecodeJSON; see [Envelope.Decode]
	Timestamp int64
	MsgID     string
	I         int64
	Username  string

	Crypto      string
	Signature   string
	Certificate string

	// GilmsgVersion is the gilmsg_version field when it is a string; see
	// [Envelope.IsGilmsg] for whether the field is present at all.
	GilmsgVersion string

	fields map[string]any
}

// ParseEnvelope decodes a frame-2 body. It fails, with an error wrapping
// [ErrInvalidJSON] or [ErrInvalidMessage], when the body is not a JSON object
// or a known field has the wrong type; unknown fields are kept.
func ParseEnvelope(body []byte) (*Envelope, error) {
	v, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: body is a JSON %s, not an object", ErrInvalidMessage, jsonKind(v))
	}
	return envelopeFromFields(obj)
}

func envelopeFromFields(obj map[string]any) (*Envelope, error) {
	e := &Envelope{fields: obj}
	strs := []struct {
		key string
		dst *string
	}{
		{fieldTopic, &e.Topic}, {fieldMsgID, &e.MsgID}, {fieldUsername, &e.Username},
		{fieldCrypto, &e.Crypto}, {fieldSignature, &e.Signature}, {fieldCertificate, &e.Certificate},
	}
	for _, f := range strs {
		v, ok := obj[f.key]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, &FieldError{Field: f.key, Want: "a string", Got: jsonKind(v)}
		}
		*f.dst = s
	}
	ints := []struct {
		key string
		dst *int64
	}{{fieldTimestamp, &e.Timestamp}, {fieldI, &e.I}}
	for _, f := range ints {
		v, ok := obj[f.key]
		if !ok || v == nil {
			continue
		}
		n, err := toInt64(v)
		if err != nil {
			return nil, &FieldError{Field: f.key, Want: "an integer", Got: err.Error()}
		}
		*f.dst = n
	}
	e.Msg = obj[fieldMsg]
	if s, ok := obj[fieldGilmsgVersion].(string); ok {
		e.GilmsgVersion = s
	}
	return e, nil
}

// toInt64 accepts integers, and floats with an integral value (Python's
// int(time.time()) is an int, but older peers sent floats).
func toInt64(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("integer %s out of range", n)
		}
		return i, nil
	case float64:
		if n != n || n < -1<<63 || n >= 1<<63 || n != float64(int64(n)) {
			return 0, fmt.Errorf("non-integral number %v", n)
		}
		return int64(n), nil
	default:
		return 0, fmt.Errorf("%s", jsonKind(v))
	}
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64, *big.Int:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// FieldError reports an envelope field of the wrong type. It unwraps to
// [ErrInvalidMessage].
type FieldError struct {
	Field string // the envelope key
	Want  string // what the field must be
	Got   string // what it was
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("gilmsg: invalid message: field %q must be %s, got %s", e.Field, e.Want, e.Got)
}

func (e *FieldError) Unwrap() error { return ErrInvalidMessage }

// Fields returns the whole decoded object, unknown keys included. The map is
// the envelope's own: treat it as read-only.
func (e *Envelope) Fields() map[string]any { return e.fields }

// Field returns one field of the decoded object.
func (e *Envelope) Field(key string) (any, bool) {
	v, ok := e.fields[key]
	return v, ok
}

// IsGilmsg reports whether the message carries gilmsg_version, of any type:
// such a message asks its consumers for an ACK.
func (e *Envelope) IsGilmsg() bool {
	_, ok := e.fields[fieldGilmsgVersion]
	return ok
}

// Decode unmarshals the payload (the msg field) into v with encoding/json.
func (e *Envelope) Decode(v any) error {
	raw, err := MarshalCanonical(e.Msg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// Body returns the canonical text of the whole envelope: what fedmsg puts in
// frame 2.
func (e *Envelope) Body() ([]byte, error) { return MarshalCanonical(e.fields) }

// signedText is the canonical text a signature covers: the envelope without
// signature and certificate, and without any key in drop.
func signedText(fields map[string]any, drop ...string) ([]byte, error) {
	stripped := make(map[string]any, len(fields))
	for k, v := range fields {
		stripped[k] = v
	}
	delete(stripped, fieldSignature)
	delete(stripped, fieldCertificate)
	for _, k := range drop {
		delete(stripped, k)
	}
	return MarshalCanonical(stripped)
}
