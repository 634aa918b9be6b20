package gilmsg

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// The decoder: a hand-written scanner over the text, as CPython's json module reads it.

// jsonDecoder reads one JSON text. Strings without escapes are substrings
// of s, so the input is copied at most once rather than once per string.
type jsonDecoder struct {
	s       string
	pos     int
	depth   int
	members []jsonMember // stack of the members of the objects being read
	elems   []any        // stack of the elements of the arrays being read
	headers []string     // where box puts the strings of the document being read
}

type jsonMember struct {
	key string
	val any
}

// Decoders and encoders are pooled for their stacks, which would otherwise
// be regrown for every message. Stacks grown past codecPoolMaxStack by some
// freak input are left to the garbage collector.
var (
	jsonDecoderPool = sync.Pool{New: func() any {
		return &jsonDecoder{members: make([]jsonMember, 0, 32), elems: make([]any, 0, 32)}
	}}
	canonEncoderPool = sync.Pool{New: func() any {
		return &canonEncoder{keys: make([]string, 0, 32)}
	}}
)

const codecPoolMaxStack = 1024

// release returns d to the pool. A successful decode leaves the stacks
// empty and cleared; an error may leave members on them.
func (d *jsonDecoder) release() {
	if cap(d.members) > codecPoolMaxStack || cap(d.elems) > codecPoolMaxStack {
		return
	}
	clear(d.members)
	clear(d.elems)
	// headers are the decoded values' own: dropped, never cleared.
	*d = jsonDecoder{members: d.members[:0], elems: d.elems[:0]}
	jsonDecoderPool.Put(d)
}

func (d *jsonDecoder) document() (any, error) {
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.s) {
		return nil, d.errorf(d.pos, "%s after the value", d.unexpected(d.pos))
	}
	return v, nil
}

func (d *jsonDecoder) errorf(off int, format string, args ...any) error {
	return &JSONSyntaxError{Offset: int64(off), Msg: fmt.Sprintf(format, args...)}
}

// unexpected names what stands at offset off, for error messages.
func (d *jsonDecoder) unexpected(off int) string {
	if off >= len(d.s) {
		return "unexpected end of input"
	}
	r, size := utf8.DecodeRuneInString(d.s[off:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("invalid UTF-8 byte 0x%02x", d.s[off])
	}
	return fmt.Sprintf("unexpected %q", r)
}

// skipSpace skips the four characters Python's json module calls whitespace.
func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.s) {
		return nil, d.errorf(d.pos, "unexpected end of input, expecting a value")
	}
	switch c := d.s[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		s, err := d.string()
		if err != nil {
			return nil, err
		}
		return d.box(stringType, s), nil
	case 't':
		return d.literal("true", true)
	case 'f':
		return d.literal("false", false)
	case 'n':
		return d.literal("null", nil)
	case 'N':
		return d.literal("NaN", math.NaN())
	case 'I':
		return d.literal("Infinity", math.Inf(1))
	case '-':
		if strings.HasPrefix(d.s[d.pos:], "-Infinity") {
			d.pos += len("-Infinity")
			return math.Inf(-1), nil
		}
		return d.number()
	default:
		if c >= '0' && c <= '9' {
			return d.number()
		}
		return nil, d.errorf(d.pos, "%s, expecting a value", d.unexpected(d.pos))
	}
}

func (d *jsonDecoder) literal(word string, v any) (any, error) {
	if !strings.HasPrefix(d.s[d.pos:], word) {
		return nil, d.errorf(d.pos, "%s, expecting a value", d.unexpected(d.pos))
	}
	d.pos += len(word)
	return v, nil
}

func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	end, isFloat, msg := scanJSONNumber(d.s, start)
	if msg != "" {
		return nil, d.errorf(end, "%s", msg)
	}
	d.pos = end
	lit := d.s[start:end]
	if isFloat {
		return parseJSONFloat(lit), nil
	}
	digits := len(lit)
	if lit[0] == '-' {
		digits--
	}
	if digits > maxJSONIntDigits {
		return nil, d.errorf(start, "integer literal has %d digits, more than %d", digits, maxJSONIntDigits)
	}
	if lit == "-0" {
		lit = "0"
	}
	return d.box(numberType, lit), nil
}

// eface is the layout of an interface value with methods-free type: its
// dynamic type and a pointer to its data.
type eface struct{ typ, data unsafe.Pointer }

func efaceOf(v any) eface { return *(*eface)(unsafe.Pointer(&v)) }

var (
	stringType = efaceOf("").typ
	numberType = efaceOf(json.Number("")).typ
)

// box returns s as an interface value of the string type typ (string or
// json.Number), as any(s) would, but with the string's header in a chunk
// shared with the next values of the same document: one allocation per
// boxStride strings instead of one per string, which is most of what
// decoding a payload allocates. Chunks are not shared across documents,
// so a value kept from one message keeps no other message's body alive.
func (d *jsonDecoder) box(typ unsafe.Pointer, s string) any {
	if len(d.headers) == cap(d.headers) {
		d.headers = make([]string, 0, boxStride)
	}
	d.headers = append(d.headers, s)
	e := eface{typ: typ, data: unsafe.Pointer(&d.headers[len(d.headers)-1])}
	return *(*any)(unsafe.Pointer(&e))
}

const boxStride = 16

// scanJSONNumber scans the JSON number starting at s[i]: -?(0|[1-9][0-9]*)
// (\.[0-9]+)?([eE][-+]?[0-9]+)?. It returns where the number ends and
// whether it has a fraction or exponent; msg is non-empty (and end the
// offset of the fault) when s[i:] does not start with a number.
func scanJSONNumber(s string, i int) (end int, isFloat bool, msg string) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s) || s[i] < '0' || s[i] > '9':
		return i, false, "expecting a digit"
	case s[i] == '0':
		i++
	default:
		i = skipASCIIDigits(s, i)
	}
	if i < len(s) && s[i] == '.' {
		j := skipASCIIDigits(s, i+1)
		if j == i+1 {
			return j, false, "expecting a digit after the decimal point"
		}
		i, isFloat = j, true
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipASCIIDigits(s, i)
		if j == i {
			return j, false, "expecting a digit in the exponent"
		}
		i, isFloat = j, true
	}
	return i, isFloat, ""
}

func skipASCIIDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// parseJSONFloat reads a literal already checked by scanJSONNumber. Like
// Python's float(), it rounds correctly and overflows to ±Inf, which strconv
// reports as a range error alongside the right value.
func parseJSONFloat(lit string) float64 {
	f, _ := strconv.ParseFloat(lit, 64)
	return f
}

func (d *jsonDecoder) object() (any, error) {
	open := d.pos
	if d.depth++; d.depth > MaxJSONDepth {
		return nil, d.errorf(open, "nesting deeper than %d", MaxJSONDepth)
	}
	d.pos++
	base := len(d.members)
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
		d.depth--
		return map[string]any{}, nil
	}
	for {
		if d.pos >= len(d.s) || d.s[d.pos] != '"' {
			return nil, d.errorf(d.pos, "%s, expecting a property name in double quotes", d.unexpected(d.pos))
		}
		key, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.s) || d.s[d.pos] != ':' {
			return nil, d.errorf(d.pos, "%s, expecting ':'", d.unexpected(d.pos))
		}
		d.pos++
		val, err := d.value()
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, jsonMember{key, val})
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
		return nil, d.errorf(d.pos, "%s, expecting ',' or '}'", d.unexpected(d.pos))
	}
	// Members gather on a shared stack so that the map is made once at its
	// final size; a later duplicate overwrites an earlier one, as in Python.
	members := d.members[base:]
	m := make(map[string]any, len(members))
	for _, kv := range members {
		m[kv.key] = kv.val
	}
	clear(members)
	d.members = d.members[:base]
	d.depth--
	return m, nil
}

func (d *jsonDecoder) array() (any, error) {
	open := d.pos
	if d.depth++; d.depth > MaxJSONDepth {
		return nil, d.errorf(open, "nesting deeper than %d", MaxJSONDepth)
	}
	d.pos++
	base := len(d.elems)
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
		d.depth--
		return []any{}, nil
	}
	for {
		val, err := d.value()
		if err != nil {
			return nil, err
		}
		d.elems = append(d.elems, val)
		d.skipSpace()
		if d.pos < len(d.s) && d.s[d.pos] == ',' {
			d.pos++
			continue
		}
		if d.pos < len(d.s) && d.s[d.pos] == ']' {
			d.pos++
			break
		}
		return nil, d.errorf(d.pos, "%s, expecting ',' or ']'", d.unexpected(d.pos))
	}
	elems := d.elems[base:]
	a := slices.Clone(elems)
	clear(elems)
	d.elems = d.elems[:base]
	d.depth--
	return a, nil
}

// string reads the string whose opening quote is at d.pos. A first pass
// finds the closing quote and checks the raw text; only a string with
// escapes needs a second pass, and a buffer of its own.
func (d *jsonDecoder) string() (string, error) {
	end, escaped, err := d.scanString()
	if err != nil {
		return "", err
	}
	start := d.pos + 1
	d.pos = end + 1
	if escaped {
		return d.unescape(start, end)
	}
	return d.s[start:end], nil
}

// scanString is string's first pass: the index of the closing quote of
// the string whose opening quote is at d.pos, and whether it has escapes.
// It leaves d.pos where it was.
func (d *jsonDecoder) scanString() (end int, escaped bool, err error) {
	s := d.s
	start := d.pos + 1
	for i := start; i < len(s); {
		if i = jsonPlainRun(s, i); i == len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '"':
			return i, escaped, nil
		case c == '\\':
			// Skip the escaped character, so that \" does not end the
			// string; unescape checks the escape itself.
			escaped = true
			i++
			if i < len(s) && s[i] < utf8.RuneSelf {
				i++
			}
		case c < 0x20:
			return 0, false, d.errorf(i, "invalid control character U+%04X in string", c)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, d.errorf(i, "invalid UTF-8 byte 0x%02x in string", c)
			}
			i += size
		}
	}
	return 0, false, d.errorf(d.pos, "unterminated string")
}

// The word-at-a-time tests of the string scanners: the high bit of each
// byte of the result flags a byte of x that is searched for. A byte is 0
// in x^(ones*c) exactly where x has c, and (v-ones)&^v sets the high bit
// of such a byte; the same trick flags bytes below 0x20, and x's own high
// bits flag non-ASCII.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// load8 reads s[i:i+8] as a little-endian word: one load once compiled.
func load8(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// jsonSpecial flags the bytes of x a JSON string cannot copy verbatim:
// controls, '"', '\\' and non-ASCII.
func jsonSpecial(x uint64) uint64 {
	quote := x ^ (swarOnes * '"')
	bslash := x ^ (swarOnes * '\\')
	return ((x - swarOnes*0x20) &^ x) | ((quote - swarOnes) &^ quote) | ((bslash - swarOnes) &^ bslash) | x
}

// jsonPlainRun returns i advanced over whole words of s that hold only
// bytes jsonSpecial does not flag: most of a message is such text, and
// one call scans all of it.
func jsonPlainRun(s string, i int) int {
	for i+8 <= len(s) && jsonSpecial(load8(s, i))&swarHighs == 0 {
		i += 8
	}
	return i
}

// unescape decodes the escapes of a string whose raw text, from d.s[start]
// to the closing quote at d.s[end], the first pass has checked.
func (d *jsonDecoder) unescape(start, end int) (string, error) {
	s := d.s[:end]
	// Unescaping never lengthens text, so one allocation does.
	b := make([]byte, 0, end-start)
	for i := start; i < end; {
		j := strings.IndexByte(s[i:], '\\')
		if j < 0 {
			b = append(b, s[i:]...)
			break
		}
		b = append(b, s[i:i+j]...)
		i += j
		esc := s[i+1] // the first pass saw to it that a backslash is not last
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := parseHex4(s, i+2)
			if !ok {
				return "", d.errorf(i, "invalid \\uXXXX escape")
			}
			i += 6
			// A high surrogate joins a low one escaped right after it;
			// any other surrogate stays alone, as Python keeps it.
			if r >= 0xD800 && r < 0xDC00 && strings.HasPrefix(s[i:], `\u`) {
				if r2, ok := parseHex4(s, i+2); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
			}
			b = appendWTF8(b, r)
			continue
		default:
			r, _ := utf8.DecodeRuneInString(s[i+1:])
			return "", d.errorf(i, "invalid escape \\%c", r)
		}
		i += 2
	}
	// b is never written again, so the string may share its memory.
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// parseHex4 reads the four hex digits at s[i:i+4].
func parseHex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendWTF8 is utf8.AppendRune except that a surrogate code point gets its
// three-byte form instead of U+FFFD.
func appendWTF8(b []byte, r rune) []byte {
	if r >= 0xD800 && r < 0xE000 {
		return append(b, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
	return utf8.AppendRune(b, r)
}

// decodeWTF8 decodes the first code point of s, which is valid UTF-8 or
// the WTF-8 form of a lone surrogate. size is 0 when s starts with neither,
// or with a high surrogate followed by a low one: well-formed WTF-8 joins
// those into one four-byte rune, and a split pair would sort differently
// here (as two code points) than at a Python peer (as one).
func decodeWTF8(s string) (r rune, size int) {
	r, size = utf8.DecodeRuneInString(s)
	if r != utf8.RuneError || size > 1 {
		return r, size
	}
	if len(s) < 3 || s[0] != 0xED || s[1] < 0xA0 || s[1] > 0xBF || s[2]&0xC0 != 0x80 {
		return 0, 0
	}
	r = 0xD000 | rune(s[1]&0x3F)<<6 | rune(s[2]&0x3F)
	if r < 0xDC00 && len(s) >= 6 && s[3] == 0xED && s[4] >= 0xB0 && s[4] <= 0xBF && s[5]&0xC0 == 0x80 {
		return 0, 0
	}
	return r, 3
}

// skipValue reads the value at d.pos as value does, accepting and
// rejecting exactly the same texts, but builds nothing: a string with
// escapes is the only thing it allocates for.
func (d *jsonDecoder) skipValue() error {
	d.skipSpace()
	if d.pos >= len(d.s) {
		return d.errorf(d.pos, "unexpected end of input, expecting a value")
	}
	switch c := d.s[d.pos]; c {
	case '{', '[':
		return d.skipContainer(c)
	case '"':
		_, err := d.string()
		return err
	case 't', 'f', 'n', 'N', 'I':
		_, err := d.value()
		return err
	case '-':
		if strings.HasPrefix(d.s[d.pos:], "-Infinity") {
			d.pos += len("-Infinity")
			return nil
		}
		return d.skipNumber()
	default:
		if c >= '0' && c <= '9' {
			return d.skipNumber()
		}
		return d.errorf(d.pos, "%s, expecting a value", d.unexpected(d.pos))
	}
}

func (d *jsonDecoder) skipNumber() error {
	start := d.pos
	end, isFloat, msg := scanJSONNumber(d.s, start)
	if msg != "" {
		return d.errorf(end, "%s", msg)
	}
	d.pos = end
	if digits := end - start - btoi(d.s[start] == '-'); !isFloat && digits > maxJSONIntDigits {
		return d.errorf(start, "integer literal has %d digits, more than %d", digits, maxJSONIntDigits)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// skipContainer skips the object or array that open, '{' or '[', starts.
func (d *jsonDecoder) skipContainer(open byte) error {
	at := d.pos
	if d.depth++; d.depth > MaxJSONDepth {
		return d.errorf(at, "nesting deeper than %d", MaxJSONDepth)
	}
	d.pos++
	end := byte(']')
	if open == '{' {
		end = '}'
	}
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == end {
		d.pos++
		d.depth--
		return nil
	}
	for {
		if open == '{' {
			if d.pos >= len(d.s) || d.s[d.pos] != '"' {
				return d.errorf(d.pos, "%s, expecting a property name in double quotes", d.unexpected(d.pos))
			}
			if _, err := d.string(); err != nil {
				return err
			}
			d.skipSpace()
			if d.pos >= len(d.s) || d.s[d.pos] != ':' {
				return d.errorf(d.pos, "%s, expecting ':'", d.unexpected(d.pos))
			}
			d.pos++
		}
		if err := d.skipValue(); err != nil {
			return err
		}
		d.skipSpace()
		if d.pos < len(d.s) && d.s[d.pos] == ',' {
			d.pos++
			if open == '{' {
				d.skipSpace()
			}
			continue
		}
		if d.pos < len(d.s) && d.s[d.pos] == end {
			d.pos++
			d.depth--
			return nil
		}
		return d.errorf(d.pos, "%s, expecting ',' or '%c'", d.unexpected(d.pos), end)
	}
}
