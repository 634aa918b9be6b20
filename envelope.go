package gilmsg

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gilmsg/gilmsg-go/internal/jsonval"
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
	fieldSeqID         = "seq_id" // the store's sequence number (§11)
)

// ProtocolVersion is the gilmsg_version this package puts on reliable
// messages: the Python gilmsg release whose protocol it speaks.
const ProtocolVersion = "0.1.2"

// GilmsgVersion is [ProtocolVersion].
//
// Deprecated: use ProtocolVersion; gilmsg.GilmsgVersion stutters.
const GilmsgVersion = ProtocolVersion

// Envelope is a fedmsg message body: the JSON object carried in frame 2.
//
// The typed fields are decoded when the body is parsed. The payload, msg,
// is checked then (a body whose msg is not valid JSON does not parse) but
// decoded only when first asked for, by [Envelope.Msg] or [Envelope.Fields];
// [Envelope.Decode] and [Envelope.RawMsg] read its text without decoding it.
// [Envelope.Fields] keeps the whole object as decoded, unknown keys
// included (replay's seq_id, ...), because the signature covers all of it;
// a parsed envelope builds that map on first use (validation is the usual
// first user), once, safely from any number of goroutines; so does Msg.
// Decoded strings
// share the memory of the body they came from: to keep one long after the
// message (a msg_id in a set, say), keep strings.Clone of it, or the whole
// body stays alive.
type Envelope struct {
	Topic     string
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

	hasGilmsg bool // gilmsg_version is present, of any type

	msgOnce sync.Once
	// msg is the decoded payload, set by msgOnce unless made with it:
	// read it through Msg, never directly.
	msg any
	// rawMsg is the text of msg in the body, for a body that
	// parseEnvelopeFast read; "" when msg was absent or decoded with the
	// whole body.
	rawMsg string

	// seq and seqOK are SeqID's answer, taken when parseEnvelopeFast read
	// the body (seqKnown): recovery asks it of every message, and Fields
	// would decode the payload for it.
	seq             int64
	seqOK, seqKnown bool

	fieldsOnce sync.Once
	// fieldMap is built by fieldsOnce unless made with it: read it
	// through Fields, never directly.
	fieldMap    map[string]any
	fieldsBuilt atomic.Bool  // fieldMap is there: read Fields, not parsed
	parsed      parsedFields // what a parsed envelope builds fields from; never changed once parsed
}

// parsedFields is what [parseEnvelopeFast] keeps for Fields besides the
// typed fields: which keys were there and the values that are not strings.
type parsedFields struct {
	fast             bool   // parseEnvelopeFast read the body
	seen             uint16 // bits of the known keys present (knownKeyBit)
	timestamp, i     any    // as decoded; nil for an integer literal
	extra            []jsonMember
	gilmsgVersionRaw any // gilmsg_version when it is not a string
}

// ParseEnvelope decodes a frame-2 body. It fails, with an error wrapping
// [ErrInvalidJSON] or [ErrInvalidMessage], when the body is not a JSON object
// or a known field has the wrong type; unknown fields are kept.
func ParseEnvelope(body []byte) (*Envelope, error) {
	if e := parseEnvelopeFast(string(body), nil); e != nil {
		return e, nil
	}
	return parseEnvelopeSlow(body)
}

// parseEnvelopeShared is ParseEnvelope for a body that nobody changes
// afterwards (a received message's, see [Message].Body): the envelope's
// strings point into it instead of into a copy of it, a copy that was a
// tenth of the CPU a subscription spends on a message. The envelope is
// made in e, a zero Envelope, when the fast path takes the body.
func parseEnvelopeShared(body []byte, e *Envelope) (*Envelope, error) {
	if e := parseEnvelopeFast(unsafe.String(unsafe.SliceData(body), len(body)), e); e != nil {
		return e, nil
	}
	return parseEnvelopeSlow(body)
}

// parseEnvelopeSlow is ParseEnvelope through the general decoder, for
// bodies the fast path declines (and to word their errors).
func parseEnvelopeSlow(body []byte) (*Envelope, error) {
	v, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: body is a JSON %s, not an object", ErrInvalidMessage, jsonval.Kind(v))
	}
	return envelopeFromFields(obj)
}

func envelopeFromFields(obj map[string]any) (*Envelope, error) {
	e := &Envelope{fieldMap: obj, msg: obj[fieldMsg]}
	e.fieldsOnce.Do(func() {})
	e.msgOnce.Do(func() {})
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
			return nil, &FieldError{Field: f.key, Want: "a string", Got: jsonval.Kind(v)}
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
		n, err := jsonval.Int64(v)
		if err != nil {
			return nil, &FieldError{Field: f.key, Want: "an integer", Got: err.Error()}
		}
		*f.dst = n
	}
	if s, ok := obj[fieldGilmsgVersion].(string); ok {
		e.GilmsgVersion = s
	}
	_, e.hasGilmsg = obj[fieldGilmsgVersion]
	return e, nil
}

// knownKeyBit numbers the envelope keys parseEnvelopeFast reads itself; 0
// for any other key.
func knownKeyBit(key string) uint16 {
	switch key {
	case fieldTopic:
		return 1 << 0
	case fieldMsg:
		return 1 << 1
	case fieldTimestamp:
		return 1 << 2
	case fieldMsgID:
		return 1 << 3
	case fieldI:
		return 1 << 4
	case fieldUsername:
		return 1 << 5
	case fieldCrypto:
		return 1 << 6
	case fieldSignature:
		return 1 << 7
	case fieldCertificate:
		return 1 << 8
	case fieldGilmsgVersion:
		return 1 << 9
	}
	return 0
}

// parseEnvelopeFast parses the usual body, an object whose known keys
// each appear once with a value of their type, without building its map
// or boxing its strings. nil means "not the usual case": ParseEnvelope
// then takes the general path, which also words any error. The envelope
// is made in e, a zero Envelope, or in a new one if e is nil.
func parseEnvelopeFast(s string, e *Envelope) *Envelope {
	d := jsonDecoderPool.Get().(*jsonDecoder)
	d.s, d.pos, d.depth = s, 0, 0
	e = parseEnvelopeMembers(d, e)
	d.release()
	return e
}

func parseEnvelopeMembers(d *jsonDecoder, e *Envelope) *Envelope {
	d.skipSpace()
	if d.pos >= len(d.s) || d.s[d.pos] != '{' {
		return nil
	}
	d.pos++
	d.depth = 1
	if e == nil {
		e = &Envelope{}
	}
	p := &e.parsed
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
	} else {
		for {
			if d.pos >= len(d.s) || d.s[d.pos] != '"' {
				return nil
			}
			key, err := d.string()
			if err != nil {
				return nil
			}
			d.skipSpace()
			if d.pos >= len(d.s) || d.s[d.pos] != ':' {
				return nil
			}
			d.pos++
			d.skipSpace()
			bit := knownKeyBit(key)
			if p.seen&bit != 0 {
				return nil // a duplicate known key: the general path decides
			}
			p.seen |= bit
			var str *string
			switch key {
			case fieldTopic:
				str = &e.Topic
			case fieldMsgID:
				str = &e.MsgID
			case fieldUsername:
				str = &e.Username
			case fieldCrypto:
				str = &e.Crypto
			case fieldSignature:
				str = &e.Signature
			case fieldCertificate:
				str = &e.Certificate
			}
			switch {
			case str != nil:
				if d.pos >= len(d.s) || d.s[d.pos] != '"' {
					return nil // null or the wrong type
				}
				if key == fieldCertificate {
					*str, err = d.certificate()
				} else {
					*str, err = d.string()
				}
				if err != nil {
					return nil
				}
			case key == fieldGilmsgVersion && d.pos < len(d.s) && d.s[d.pos] == '"':
				if e.GilmsgVersion, err = d.string(); err != nil {
					return nil
				}
			case key == fieldMsg:
				// Checked, not decoded: Msg decodes it when asked.
				start := d.pos
				if d.skipValue() != nil {
					return nil
				}
				e.rawMsg = d.s[start:d.pos]
			case (key == fieldTimestamp || key == fieldI) && d.plainInt(&e.Timestamp, &e.I, key == fieldI):
				// An integer literal: its value in Fields is rebuilt from
				// the typed field (p.timestamp or p.i left nil).
			default:
				v, err := d.value()
				if err != nil {
					return nil
				}
				switch key {
				case fieldTimestamp, fieldI:
					n, err := jsonval.Int64(v)
					if err != nil {
						return nil
					}
					if key == fieldI {
						e.I, p.i = n, v
					} else {
						e.Timestamp, p.timestamp = n, v
					}
				case fieldGilmsgVersion:
					p.gilmsgVersionRaw = v
				default:
					if key == fieldSeqID { // a later duplicate wins, as in Fields
						n, err := jsonval.Int64(v)
						e.seq, e.seqOK = n, err == nil
					}
					p.extra = append(p.extra, jsonMember{key, v})
				}
			}
			d.skipSpace()
			if d.pos < len(d.s) && d.s[d.pos] == ',' {
				d.pos++
				d.skipSpace()
				continue
			}
			if d.pos < len(d.s) && d.s[d.pos] == '}' {
				d.pos++
				break
			}
			return nil
		}
	}
	d.skipSpace()
	if d.pos < len(d.s) {
		return nil
	}
	e.hasGilmsg = p.seen&knownKeyBit(fieldGilmsgVersion) != 0
	e.seqKnown = true
	p.fast = true
	return e
}

// buildFields makes the map of a parsed envelope: what DecodeJSON would
// have returned for its body.
func (e *Envelope) buildFields() map[string]any {
	p := &e.parsed
	m := make(map[string]any, bits.OnesCount16(p.seen)+len(p.extra))
	strs := []struct {
		key string
		val string
	}{
		{fieldTopic, e.Topic}, {fieldMsgID, e.MsgID}, {fieldUsername, e.Username},
		{fieldCrypto, e.Crypto}, {fieldSignature, e.Signature}, {fieldCertificate, e.Certificate},
	}
	for _, f := range strs {
		if p.seen&knownKeyBit(f.key) != 0 {
			m[f.key] = f.val
		}
	}
	if p.seen&knownKeyBit(fieldMsg) != 0 {
		m[fieldMsg] = e.Msg()
	}
	if p.seen&knownKeyBit(fieldTimestamp) != 0 {
		m[fieldTimestamp] = intField(p.timestamp, e.Timestamp)
	}
	if p.seen&knownKeyBit(fieldI) != 0 {
		m[fieldI] = intField(p.i, e.I)
	}
	if p.seen&knownKeyBit(fieldGilmsgVersion) != 0 {
		if p.gilmsgVersionRaw != nil {
			m[fieldGilmsgVersion] = p.gilmsgVersionRaw
		} else {
			m[fieldGilmsgVersion] = e.GilmsgVersion
		}
	}
	for _, kv := range p.extra {
		m[kv.key] = kv.val // a later duplicate wins, as in DecodeJSON
	}
	return m
}

// intField is the decoded value of timestamp or i: v, or, when the fast
// path read an integer literal without boxing it (v nil), the json.Number
// DecodeJSON makes of it, which is n's decimal text (JSON has no leading
// zeros, and "-0" decodes as "0").
func intField(v any, n int64) any {
	if v == nil {
		return json.Number(strconv.FormatInt(n, 10))
	}
	return v
}

// plainInt reads, at d.pos, an integer literal that fits an int64 into
// *i when isI, else into *ts. It reports false, reading nothing, for
// anything else (a float, a bigger integer, not a number).
func (d *jsonDecoder) plainInt(ts, i *int64, isI bool) bool {
	if d.pos >= len(d.s) || (d.s[d.pos] != '-' && (d.s[d.pos] < '0' || d.s[d.pos] > '9')) {
		return false
	}
	end, isFloat, msg := scanJSONNumber(d.s, d.pos)
	if msg != "" || isFloat {
		return false
	}
	n, err := strconv.ParseInt(d.s[d.pos:end], 10, 64)
	if err != nil {
		return false
	}
	if isI {
		*i = n
	} else {
		*ts = n
	}
	d.pos = end
	return true
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
func (e *Envelope) Fields() map[string]any {
	e.fieldsOnce.Do(func() {
		e.fieldMap = e.buildFields()
		e.fieldsBuilt.Store(true)
	})
	return e.fieldMap
}

// Field returns one field of the decoded object.
func (e *Envelope) Field(key string) (any, bool) {
	v, ok := e.Fields()[key]
	return v, ok
}

// IsGilmsg reports whether the message carries gilmsg_version, of any type:
// such a message asks its consumers for an ACK.
func (e *Envelope) IsGilmsg() bool {
	return e.hasGilmsg
}

// Msg returns the payload, the msg field, as [DecodeJSON] decodes it (nil
// when the field is absent or null). A parsed envelope decodes it on the
// first call, once, safely from any number of goroutines; later calls
// return the same value, which is the envelope's own: treat it as
// read-only. Decoding cannot fail, as ParseEnvelope has checked the text.
func (e *Envelope) Msg() any {
	e.msgOnce.Do(func() {
		if e.rawMsg == "" {
			return
		}
		// ParseEnvelope checked this text, so it decodes.
		e.msg, _ = decodeJSONString(e.rawMsg)
	})
	return e.msg
}

// RawMsg returns the payload's JSON text, a copy the caller owns: the msg
// field's text as it stood in the body, or, for a body ParseEnvelope read
// as a whole (one with a duplicate key, say), the canonical text of Msg.
// It is nil when msg is absent. It does not decode msg.
func (e *Envelope) RawMsg() json.RawMessage {
	if e.rawMsg != "" {
		return json.RawMessage(e.rawMsg)
	}
	if !hasField(e, fieldMsg) {
		return nil
	}
	raw, err := MarshalCanonical(e.Msg())
	if err != nil {
		return nil
	}
	return raw
}

// Decode unmarshals the payload (the msg field) into v with encoding/json,
// from its text (see [Envelope.RawMsg]), without decoding it into Msg.
func (e *Envelope) Decode(v any) error {
	raw := e.RawMsg()
	if raw == nil {
		raw = json.RawMessage("null")
	}
	return json.Unmarshal(raw, v)
}

// Body returns the canonical text of the whole envelope: what fedmsg puts in
// frame 2.
func (e *Envelope) Body() ([]byte, error) { return MarshalCanonical(e.Fields()) }

// appendSignedText appends the canonical text a signature covers: the
// envelope without signature and certificate, and without any key in
// drop. It writes from fields itself, as MarshalCanonical would write the
// map without those keys.
func appendSignedText(dst []byte, fields map[string]any, drop ...string) ([]byte, error) {
	e := canonEncoderPool.Get().(*canonEncoder)
	defer e.release()
	e.buf, e.depth, e.ptrDepth = dst, 0, 0
	if err := e.open(); err != nil {
		return dst, err
	}
	members := e.pushSortedMembers(fields)
	e.buf = append(e.buf, '{')
	first := true
	for _, kv := range members {
		if kv.key == fieldSignature || kv.key == fieldCertificate || slices.Contains(drop, kv.key) {
			continue
		}
		if !first {
			e.buf = append(e.buf, ',')
		}
		first = false
		if err := e.string(kv.key); err != nil {
			return dst, err
		}
		e.buf = append(e.buf, ':')
		if err := e.value(kv.val); err != nil {
			return dst, err
		}
	}
	e.popMembers(members)
	return append(e.buf, '}'), nil
}

// appendPlainEnvelope appends the canonical body of an unsigned envelope
// (what MarshalCanonical writes for the same map) without building the
// map: the keys are written in their sorted order, and msg is the
// payload's canonical text, copied as it is. seqAt is the offset in the
// returned slice where a seq_id would go, its key's place in the order
// (see spliceSeqID).
func appendPlainEnvelope(dst []byte, topic string, msg []byte, timestamp int64, msgID string, i int64, username string, gilmsg bool) (_ []byte, seqAt int, _ error) {
	e := canonEncoderPool.Get().(*canonEncoder)
	defer e.release()
	e.buf = dst
	str := func(key, val string) error {
		e.buf = append(e.buf, key...)
		return e.string(val)
	}
	e.buf = append(e.buf, '{')
	if gilmsg {
		if err := str(`"gilmsg_version":`, ProtocolVersion); err != nil {
			return dst, 0, err
		}
		e.buf = append(e.buf, ',')
	}
	e.buf = append(e.buf, `"i":`...)
	e.buf = strconv.AppendInt(e.buf, i, 10)
	e.buf = append(e.buf, `,"msg":`...)
	e.buf = append(e.buf, msg...)
	if err := str(`,"msg_id":`, msgID); err != nil {
		return dst, 0, err
	}
	seqAt = len(e.buf)
	e.buf = append(e.buf, `,"timestamp":`...)
	e.buf = strconv.AppendInt(e.buf, timestamp, 10)
	if err := str(`,"topic":`, topic); err != nil {
		return dst, 0, err
	}
	if err := str(`,"username":`, username); err != nil {
		return dst, 0, err
	}
	e.buf = append(e.buf, '}')
	out := e.buf
	e.buf = nil
	return out, seqAt, nil
}

// spliceSeqID returns body, an envelope appendPlainEnvelope wrote without
// seq_id, with "seq_id":seqID at seqAt: what MarshalCanonical writes for
// the envelope's map with seq_id set. A store seals a message this way
// while it holds its write lock, without encoding the message again.
func spliceSeqID(body []byte, seqAt int, seqID int64) []byte {
	var num [20]byte
	n := strconv.AppendInt(num[:0], seqID, 10)
	const key = `,"seq_id":`
	out := make([]byte, 0, len(body)+len(key)+len(n))
	out = append(out, body[:seqAt]...)
	out = append(out, key...)
	out = append(out, n...)
	return append(out, body[seqAt:]...)
}

// hasField reports whether env has key, without building Fields where
// the parsed envelope can tell.
func hasField(env *Envelope, key string) bool {
	if p := &env.parsed; p.fast && !env.fieldsBuilt.Load() {
		if bit := knownKeyBit(key); bit != 0 {
			return p.seen&bit != 0
		}
		return slices.ContainsFunc(p.extra, func(m jsonMember) bool { return m.key == key })
	}
	_, ok := env.Fields()[key]
	return ok
}

// SeqID returns the message's seq_id (WIRE.md §11) and whether it has one
// that is an integer.
func (e *Envelope) SeqID() (int64, bool) {
	if e.seqKnown {
		return e.seq, e.seqOK
	}
	v, ok := e.Fields()[fieldSeqID]
	if !ok {
		return 0, false
	}
	n, err := jsonval.Int64(v)
	return n, err == nil
}

// addedAfterSigning lists the sets of fields Python peers add to a message
// after signing it, which a signature check may leave out: gilmsg_version
// (gilmsg 0.1.2), seq_id (fedmsg's store), or both.
func addedAfterSigning(env *Envelope) [][]string {
	seq := hasField(env, fieldSeqID)
	switch gil := env.IsGilmsg(); {
	case gil && seq:
		return dropBoth
	case gil:
		return dropGilmsg
	case seq:
		return dropSeqID
	}
	return nil
}

// The answers of addedAfterSigning, made once: read-only.
var (
	dropBoth   = [][]string{{fieldGilmsgVersion}, {fieldSeqID}, {fieldGilmsgVersion, fieldSeqID}}
	dropGilmsg = [][]string{{fieldGilmsgVersion}}
	dropSeqID  = [][]string{{fieldSeqID}}
)

// scratchBufs holds buffers for bytes that are copied before anyone else
// can see them: the text a signature covers, while it is signed or
// verified; the payload of an unsigned, unstored message (copied into
// its body) and that body (copied by zmq_send). maxScratch keeps a rare
// huge one from staying in the pool.
var scratchBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 64 << 10

// putScratch hands b, which grew from the buffer p held, back to the pool.
func putScratch(p *[]byte, b []byte) {
	if cap(b) <= maxScratch {
		*p = b[:0]
		scratchBufs.Put(p)
	}
}
