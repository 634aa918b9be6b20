package gilmsg

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// The text a signature covers, written from a parsed envelope without
// building its Fields: no map of the envelope, no decoded payload, no
// second encoding of it. A validating subscriber verifies every message
// and a reliable publisher every ACK; the map and the payload's decode
// were a third of the allocations of a reliable publish.
//
// It applies to what this package and Python fedmsg send: the known keys
// only, integers for timestamp and i, and a payload whose text is already
// canonical (the publisher wrote it with json.dumps(sort_keys=True) or
// AppendCanonical), which is then copied as it is. Anything else (unknown
// keys such as seq_id, a float, a non-ASCII character, a key out of
// order) takes the general path, appendSignedText over Fields, which
// gives the same text for every envelope this path takes.

// appendSignedTextFast appends what appendSignedText(dst, e.Fields(),
// drop...) would, and true; or dst and false when e is not one it takes.
func (e *Envelope) appendSignedTextFast(dst []byte, drop []string) ([]byte, bool) {
	p := &e.parsed
	if !p.fast || e.fieldsBuilt.Load() || len(p.extra) > 0 || p.timestamp != nil || p.i != nil || p.gilmsgVersionRaw != nil {
		return dst, false
	}
	has := func(key string) bool { return p.seen&knownKeyBit(key) != 0 && !slices.Contains(drop, key) }
	// The payload sits in the envelope's object: its containers start at
	// depth 2, as the encoder counts.
	if has(fieldMsg) && !isCanonicalJSON(e.rawMsg, 1) {
		return dst, false
	}
	enc := canonEncoderPool.Get().(*canonEncoder)
	defer enc.release()
	enc.buf = append(dst, '{')
	str := func(key, val string) bool {
		if !has(key) {
			return true
		}
		enc.member(key)
		return enc.string(val) == nil
	}
	num := func(key string, n int64) {
		if has(key) {
			enc.member(key)
			enc.buf = strconv.AppendInt(enc.buf, n, 10)
		}
	}
	// In key order (certificate and signature are not signed).
	if !str(fieldCrypto, e.Crypto) || !str(fieldGilmsgVersion, e.GilmsgVersion) {
		return dst, false
	}
	num(fieldI, e.I)
	if has(fieldMsg) {
		enc.member(fieldMsg)
		enc.buf = append(enc.buf, e.rawMsg...)
	}
	if !str(fieldMsgID, e.MsgID) {
		return dst, false
	}
	num(fieldTimestamp, e.Timestamp)
	if !str(fieldTopic, e.Topic) || !str(fieldUsername, e.Username) {
		return dst, false
	}
	out := append(enc.buf, '}')
	enc.buf = nil
	return out, true
}

// member writes the separator, if a member came before, and "key":.
func (e *canonEncoder) member(key string) {
	if e.buf[len(e.buf)-1] != '{' {
		e.buf = append(e.buf, ',')
	}
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, key...)
	e.buf = append(e.buf, '"', ':')
}

// isCanonicalJSON reports whether s, a JSON text the decoder has already
// accepted, found in depth containers, is its own canonical form: what
// AppendCanonical writes for what DecodeJSON reads from it. It errs only
// towards false: it declines floats, NaN and Infinity, "-0", \u escapes,
// non-ASCII bytes, and keys with escapes.
func isCanonicalJSON(s string, depth int) bool {
	c := canonChecker{s: s}
	return c.value(depth) && c.pos == len(s)
}

type canonChecker struct {
	s   string
	pos int
}

func (c *canonChecker) value(depth int) bool {
	if c.pos >= len(c.s) {
		return false
	}
	switch ch := c.s[c.pos]; {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		_, _, ok := c.string()
		return ok
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.integer()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(c.s)-c.pos >= len(lit) && c.s[c.pos:c.pos+len(lit)] == lit {
			c.pos += len(lit)
			return true
		}
	}
	return false
}

func (c *canonChecker) object(depth int) bool {
	if depth > MaxJSONDepth {
		return false
	}
	c.pos++ // '{'
	if c.next('}') {
		return true
	}
	prev := ""
	for first := true; ; first = false {
		key, escaped, ok := c.string()
		// Sorted and unique: bytewise is code point order for ASCII; a
		// key's order with escapes would have to be judged on its
		// decoded text.
		if !ok || escaped || !first && key <= prev || !c.next(':') || !c.value(depth) {
			return false
		}
		prev = key
		if c.next('}') {
			return true
		}
		if !c.next(',') {
			return false
		}
	}
}

func (c *canonChecker) array(depth int) bool {
	if depth > MaxJSONDepth {
		return false
	}
	c.pos++ // '['
	if c.next(']') {
		return true
	}
	for {
		if !c.value(depth) {
			return false
		}
		if c.next(']') {
			return true
		}
		if !c.next(',') {
			return false
		}
	}
}

func (c *canonChecker) next(b byte) bool {
	if c.pos < len(c.s) && c.s[c.pos] == b {
		c.pos++
		return true
	}
	return false
}

// string checks a string at c.pos and returns its raw text, and whether
// it has escapes.
func (c *canonChecker) string() (raw string, escaped, ok bool) {
	if !c.next('"') {
		return "", false, false
	}
	start := c.pos
	for i := start; i < len(c.s); {
		i = canonPlainRun(c.s, i)
		if i == len(c.s) {
			break
		}
		switch c.s[i] {
		case '"':
			c.pos = i + 1
			return c.s[start:i], escaped, true
		case '\\':
			// The escapes the encoder writes itself; \u and \/ are
			// declined.
			if i+1 >= len(c.s) {
				return "", false, false
			}
			switch c.s[i+1] {
			case '"', '\\', 'n', 'r', 't', 'b', 'f':
			default:
				return "", false, false
			}
			escaped = true
			i += 2
		default:
			return "", false, false // a control, DEL or non-ASCII byte
		}
	}
	return "", false, false
}

// integer accepts an integer as the encoder writes it: no "-0", no
// fraction or exponent.
func (c *canonChecker) integer() bool {
	start := c.pos
	end, isFloat, msg := scanJSONNumber(c.s, start)
	if msg != "" || isFloat || c.s[start:end] == "-0" {
		return false
	}
	if digits := end - start - btoi(c.s[start] == '-'); digits > maxJSONIntDigits {
		return false
	}
	c.pos = end
	return true
}

// certStrings remembers decoded certificate fields by their text in the
// body. A publisher puts the same certificate, about 2 KB with an escape
// every 76 characters, in every message and ACK; decoding it anew was the
// largest allocation of a validated message. Slots are picked by length
// and two bytes of the text; a miss costs what decoding always did, plus
// a copy of the text to remember it by.
var certStrings [64]atomic.Pointer[certString]

type certString struct{ raw, decoded string }

// maxCertMemo bounds the text certStrings keeps, at 64 slots × twice
// this: an RSA 4096 certificate in PEM and base64 is under 4 KB.
const maxCertMemo = 16 << 10

// certificate reads the string at d.pos as string does, from certStrings
// when its text was read before.
func (d *jsonDecoder) certificate() (string, error) {
	end, escaped, err := d.scanString()
	if err != nil || !escaped || end-d.pos > maxCertMemo {
		// An unescaped string costs nothing to read; a longer one than
		// any certificate is not kept: a peer could fill every slot.
		return d.string()
	}
	raw := d.s[d.pos : end+1]
	slot := &certStrings[(len(raw)+int(raw[len(raw)/2])*7+int(raw[len(raw)*3/4])*13)%len(certStrings)]
	if m := slot.Load(); m != nil && m.raw == raw {
		d.pos = end + 1
		return m.decoded, nil
	}
	decoded, err := d.string()
	if err == nil {
		// decoded has memory of its own (string unescaped it): it may
		// outlive the body.
		slot.Store(&certString{raw: strings.Clone(raw), decoded: decoded})
	}
	return decoded, err
}
