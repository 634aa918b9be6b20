package gilmsg

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// The signed text of a fedmsg message is Python's
//
//	json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
//
// (WIRE.md §3). encoding/json cannot reproduce it: it replaces lone
// surrogates, escapes <, > and &, formats floats its own way and reads every
// number as a float. So this file holds a small parser and encoder of their
// own, written to agree with CPython's json module byte for byte.

// MaxJSONDepth bounds the nesting of arrays and objects, both when decoding
// and when encoding, so a hostile body cannot exhaust the stack and every
// encoded text decodes again. Python's own bound is its recursion limit
// (about 1000); no fedmsg message comes near either.
const MaxJSONDepth = 512

// maxJSONIntDigits mirrors CPython ≥ 3.11, whose int() refuses literals of
// more than 4300 digits (sys.int_info.default_max_str_digits): json.loads
// raises on them, so they are not JSON a Python peer can read.
const maxJSONIntDigits = 4300

// JSONSyntaxError reports where and why a text is not JSON as Python's json
// module reads it. It unwraps to [ErrInvalidJSON].
type JSONSyntaxError struct {
	Offset int64  // byte offset into the input where the problem was found
	Msg    string // what was wrong there
}

func (e *JSONSyntaxError) Error() string {
	return ErrInvalidJSON.Error() + ": offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
}

// Unwrap returns [ErrInvalidJSON].
func (e *JSONSyntaxError) Unwrap() error { return ErrInvalidJSON }

// DecodeJSON parses data the way Python's json.loads does: surrounding
// whitespace is allowed, NaN, Infinity and -Infinity are accepted, a
// duplicate key keeps its last value, and data must be valid UTF-8.
//
// The result is built from nil, bool, string, [json.Number], float64, []any
// and map[string]any. A number without fraction or exponent is an integer of
// any size and becomes a json.Number holding its literal ("-0" becomes "0");
// every other number is a float64 (±Inf on overflow). A lone surrogate
// escape such as \ud800 is kept in the string as WTF-8 (its three-byte
// generalised UTF-8 form) so that it survives a round trip; an escaped
// surrogate pair becomes the ordinary four-byte UTF-8 rune.
//
// Errors are [*JSONSyntaxError] values, which match [ErrInvalidJSON].
func DecodeJSON(data []byte) (any, error) {
	return decodeJSONString(string(data))
}

// decodeJSONString is DecodeJSON on a string: the decoded strings are
// substrings of s wherever they have no escapes.
func decodeJSONString(s string) (any, error) {
	d := jsonDecoderPool.Get().(*jsonDecoder)
	d.s, d.pos, d.depth = s, 0, 0
	v, err := d.document()
	d.release()
	return v, err
}

// AppendCanonical appends the canonical JSON text of v to dst and returns
// the extended buffer; on error it returns dst unchanged.
//
// v may hold what [DecodeJSON] returns, and ordinary Go values: strings
// (valid UTF-8, or WTF-8 for lone surrogates), bool, every int and uint
// kind, float32 and float64 (written as Python's repr writes a float, so
// 1.0 is "1.0"), *big.Int, json.Number (a valid JSON number), [json.RawMessage]
// (decoded, then encoded), []byte (base64, as encoding/json writes it),
// slices, arrays, maps with string keys and pointers to any of these. Nil
// maps, slices and pointers are null, as with encoding/json. Anything else —
// structs, maps with other keys, types with a MarshalJSON or MarshalText
// method — goes through [json.Marshal] and is then decoded and encoded here,
// so struct tags apply; note that encoding/json writes integral floats
// without a fraction, so inside such values 1.0 comes out as the integer 1.
//
// Values that have no JSON form (channels, functions, cycles, nesting deeper
// than [MaxJSONDepth], integers of more than 4300 digits, strings that are
// not UTF-8) are an error matching [ErrInvalidJSON].
func AppendCanonical(dst []byte, v any) ([]byte, error) {
	e := canonEncoderPool.Get().(*canonEncoder)
	e.buf, e.depth, e.ptrDepth = dst, 0, 0
	err := e.value(v)
	out := e.buf
	e.release()
	if err != nil {
		return dst, err
	}
	return out, nil
}

// MarshalCanonical returns the canonical JSON text of v; see [AppendCanonical].
func MarshalCanonical(v any) ([]byte, error) {
	return AppendCanonical(make([]byte, 0, 512), v)
}

// CanonicalizeJSON returns the canonical form of a JSON text: what Python
// writes for json.dumps(json.loads(text), sort_keys=True,
// separators=(",", ":")). It is [DecodeJSON] followed by [MarshalCanonical].
func CanonicalizeJSON(text []byte) ([]byte, error) {
	// The decoded value dies before this returns, so its strings may alias
	// text instead of a copy of it.
	v, err := decodeJSONString(unsafe.String(unsafe.SliceData(text), len(text)))
	if err != nil {
		return nil, err
	}
	return AppendCanonical(make([]byte, 0, len(text)+len(text)/8), v)
}

// ---- decoding ----

// jsonDecoder reads one JSON text. Strings without escapes are substrings
// of s, so the input is copied at most once rather than once per string.
type jsonDecoder struct {
	s       string
	pos     int
	depth   int
	members []jsonMember // stack of the members of the objects being read
	elems   []any        // stack of the elements of the arrays being read
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
		return d.string()
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
	return json.Number(lit), nil
}

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
	s := d.s
	start := d.pos + 1
	escaped := false
	for i := start; i < len(s); {
		// Eight plain ASCII bytes at a time: most of a message is such text.
		if i+8 <= len(s) && plainASCII8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		switch {
		case c == '"':
			d.pos = i + 1
			if escaped {
				return d.unescape(start, i)
			}
			return s[start:i], nil
		case c == '\\':
			// Skip the escaped character, so that \" does not end the
			// string; unescape checks the escape itself.
			escaped = true
			i++
			if i < len(s) && s[i] < utf8.RuneSelf {
				i++
			}
		case c < 0x20:
			return "", d.errorf(i, "invalid control character U+%04X in string", c)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return "", d.errorf(i, "invalid UTF-8 byte 0x%02x in string", c)
			}
			i += size
		}
	}
	return "", d.errorf(d.pos, "unterminated string")
}

// plainASCII8 reports whether all of b's 8 bytes are printable-or-DEL ASCII
// other than '"' and '\\', i.e. bytes a string copies verbatim.
func plainASCII8(b string) bool {
	x := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	const ones = 0x0101010101010101
	const highs = 0x8080808080808080
	// A byte is 0 in v exactly where x has the byte searched for; (v-ones)&^v
	// sets that byte's high bit. The same trick flags bytes below 0x20, and
	// x's own high bits flag non-ASCII.
	quote := x ^ (ones * '"')
	bslash := x ^ (ones * '\\')
	special := (x - ones*0x20) & ^x
	special |= (quote - ones) & ^quote
	special |= (bslash - ones) & ^bslash
	return (special|x)&highs == 0
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

// ---- encoding ----

type canonEncoder struct {
	buf      []byte
	keys     []string // stack of the sorted keys of the maps being written
	depth    int      // arrays and objects open
	ptrDepth int      // pointers followed, to stop on a cycle of pointers
}

func (e *canonEncoder) release() {
	if cap(e.keys) > codecPoolMaxStack {
		return
	}
	clear(e.keys)
	*e = canonEncoder{keys: e.keys[:0]}
	canonEncoderPool.Put(e)
}

// maxEncodePtrDepth bounds pointer chains, which nest no JSON but can be
// cyclic.
const maxEncodePtrDepth = 1000

func (e *canonEncoder) value(v any) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case string:
		return e.string(x)
	case map[string]any:
		return e.mapAny(x)
	case []any:
		return e.sliceAny(x)
	case json.Number:
		return e.number(string(x))
	case float64:
		e.buf = appendPyFloat(e.buf, x, 64)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case int:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int64:
		e.buf = strconv.AppendInt(e.buf, x, 10)
	case int32:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int16:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case int8:
		e.buf = strconv.AppendInt(e.buf, int64(x), 10)
	case uint:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint64:
		e.buf = strconv.AppendUint(e.buf, x, 10)
	case uint32:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint16:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case uint8:
		e.buf = strconv.AppendUint(e.buf, uint64(x), 10)
	case float32:
		e.buf = appendPyFloat(e.buf, float64(x), 32)
	case *big.Int:
		return e.bigInt(x)
	case json.RawMessage:
		return e.raw(x)
	case []byte:
		e.bytes(x)
	case []string:
		return e.sliceString(x)
	case map[string]string:
		return e.mapString(x)
	default:
		return e.reflectValue(reflect.ValueOf(v))
	}
	return nil
}

func (e *canonEncoder) open() error {
	if e.depth++; e.depth > MaxJSONDepth {
		return fmt.Errorf("%w: nesting deeper than %d (or a cycle)", ErrInvalidJSON, MaxJSONDepth)
	}
	return nil
}

// pushSortedKeys pushes the keys of a map on the key stack, sorted, and
// returns them; popKeys pops them once the map is written (after an error
// the encoder is dropped, so nothing needs popping). Go strings compare
// bytewise, which for UTF-8 and WTF-8 is code point order, the order Python
// sorts str keys in.
func pushSortedKeys[V any](e *canonEncoder, m map[string]V) []string {
	base := len(e.keys)
	for k := range m {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.Sort(keys)
	return keys
}

func (e *canonEncoder) popKeys(keys []string) {
	clear(keys)
	e.keys = e.keys[:len(e.keys)-len(keys)]
}

func (e *canonEncoder) mapAny(m map[string]any) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.open(); err != nil {
		return err
	}
	keys := pushSortedKeys(e, m)
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.string(k); err != nil {
			return err
		}
		e.buf = append(e.buf, ':')
		if err := e.value(m[k]); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.popKeys(keys)
	e.depth--
	return nil
}

func (e *canonEncoder) mapString(m map[string]string) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.open(); err != nil {
		return err
	}
	keys := pushSortedKeys(e, m)
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.string(k); err != nil {
			return err
		}
		e.buf = append(e.buf, ':')
		if err := e.string(m[k]); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.popKeys(keys)
	e.depth--
	return nil
}

func (e *canonEncoder) sliceAny(a []any) error {
	if a == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.open(); err != nil {
		return err
	}
	e.buf = append(e.buf, '[')
	for i, v := range a {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.value(v); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	e.depth--
	return nil
}

func (e *canonEncoder) sliceString(a []string) error {
	if a == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.open(); err != nil {
		return err
	}
	e.buf = append(e.buf, '[')
	for i, s := range a {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.string(s); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	e.depth--
	return nil
}

const lowerHexDigits = "0123456789abcdef"

// plainStringByte marks the bytes a string is written with unescaped:
// printable ASCII except '"' and '\\'. Python's ensure_ascii escapes the rest.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7F; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (e *canonEncoder) string(s string) error {
	b := append(e.buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainStringByte[c] {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			if c < utf8.RuneSelf { // other controls and DEL
				b = appendUEscape(b, rune(c))
				break
			}
			r, size := decodeWTF8(s[i:])
			if size == 0 {
				return fmt.Errorf("%w: string is not UTF-8: byte 0x%02x at index %d", ErrInvalidJSON, c, i)
			}
			if r >= 0x10000 {
				r -= 0x10000
				b = appendUEscape(b, 0xD800+r>>10)
				b = appendUEscape(b, 0xDC00+r&0x3FF)
			} else {
				b = appendUEscape(b, r)
			}
			i += size
			start = i
			continue
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	e.buf = append(b, '"')
	return nil
}

// appendUEscape appends \uXXXX for a code point of the BMP.
func appendUEscape(b []byte, r rune) []byte {
	const hex = lowerHexDigits
	return append(b, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
}

// appendPyFloat writes f as Python's float repr does: the shortest digits
// that read back as f (what strconv's -1 precision gives), in plain
// notation when the first digit's decimal exponent is in [-4, 16) and with
// ".0" on integral values, else as d.ddde±XX. bits is 32 for a float32,
// whose shortest digits also name it exactly once read back as a float64.
func appendPyFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	var tmp [32]byte
	t := strconv.AppendFloat(tmp[:0], f, 'e', -1, bits) // [-]d[.ddd]e±dd[d]
	if t[0] == '-' {
		b = append(b, '-')
		t = t[1:]
	}
	mark := slices.Index(t, 'e')
	exp := 0
	for _, c := range t[mark+2:] {
		exp = exp*10 + int(c-'0')
	}
	if t[mark+1] == '-' {
		exp = -exp
	}
	if exp < -4 || exp >= 16 {
		// strconv's exponent form is already Python's: "1e-05", "1e+16".
		return append(b, t...)
	}
	// The digits without the point: t[0] and t[2:mark].
	first, rest := t[0], t[:mark][min(2, mark):]
	if exp < 0 {
		b = append(b, '0', '.')
		for range -exp - 1 {
			b = append(b, '0')
		}
		b = append(b, first)
		return append(b, rest...)
	}
	b = append(b, first)
	if len(rest) <= exp {
		b = append(b, rest...)
		for range exp - len(rest) {
			b = append(b, '0')
		}
		return append(b, '.', '0')
	}
	b = append(b, rest[:exp]...)
	b = append(b, '.')
	return append(b, rest[exp:]...)
}

// number writes a json.Number: an integer literal as it is, as Python's int
// writes it back, anything else as the float it denotes.
func (e *canonEncoder) number(n string) error {
	end, isFloat, msg := scanJSONNumber(n, 0)
	if msg == "" && end != len(n) {
		msg = "extra characters"
	}
	if msg != "" {
		return fmt.Errorf("%w: json.Number %q is not a JSON number", ErrInvalidJSON, n)
	}
	if isFloat {
		e.buf = appendPyFloat(e.buf, parseJSONFloat(n), 64)
		return nil
	}
	digits := len(n)
	if n[0] == '-' {
		digits--
	}
	if digits > maxJSONIntDigits {
		return fmt.Errorf("%w: integer has %d digits, more than %d", ErrInvalidJSON, digits, maxJSONIntDigits)
	}
	if n == "-0" {
		n = "0"
	}
	e.buf = append(e.buf, n...)
	return nil
}

func (e *canonEncoder) bigInt(x *big.Int) error {
	if x == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	mark := len(e.buf)
	e.buf = x.Append(e.buf, 10)
	digits := len(e.buf) - mark
	if x.Sign() < 0 {
		digits--
	}
	if digits > maxJSONIntDigits {
		e.buf = e.buf[:mark]
		return fmt.Errorf("%w: integer has %d digits, more than %d", ErrInvalidJSON, digits, maxJSONIntDigits)
	}
	return nil
}

func (e *canonEncoder) raw(m json.RawMessage) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	v, err := DecodeJSON(m)
	if err != nil {
		return err
	}
	return e.value(v)
}

func (e *canonEncoder) bytes(p []byte) {
	if p == nil {
		e.buf = append(e.buf, "null"...)
		return
	}
	e.buf = append(e.buf, '"')
	e.buf = base64.StdEncoding.AppendEncode(e.buf, p)
	e.buf = append(e.buf, '"')
}

var (
	reflectJSONMarshaler = reflect.TypeFor[json.Marshaler]()
	reflectTextMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	reflectJSONNumber    = reflect.TypeFor[json.Number]()
	reflectRawMessage    = reflect.TypeFor[json.RawMessage]()
	reflectBigIntPtr     = reflect.TypeFor[*big.Int]()
)

func hasOwnJSON(t reflect.Type) bool {
	return t.Implements(reflectJSONMarshaler) || t.Implements(reflectTextMarshaler)
}

// reflectValue writes the values the type switch in value does not know:
// named basic types, other slices and maps, pointers; it hands everything
// with a JSON form of its own, and structs, to encoding/json.
func (e *canonEncoder) reflectValue(rv reflect.Value) error {
	if !rv.IsValid() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	t := rv.Type()
	switch t {
	case reflectJSONNumber:
		return e.number(rv.String())
	case reflectRawMessage:
		return e.raw(rv.Bytes())
	case reflectBigIntPtr:
		return e.bigInt(rv.Interface().(*big.Int))
	}
	if hasOwnJSON(t) {
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.viaEncodingJSON(rv.Interface())
	}
	// encoding/json calls pointer-receiver methods on addressable values
	// (slice elements); so do we.
	if rv.CanAddr() && hasOwnJSON(reflect.PointerTo(t)) {
		return e.viaEncodingJSON(rv.Addr().Interface())
	}
	switch rv.Kind() {
	case reflect.Bool:
		e.buf = strconv.AppendBool(e.buf, rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.buf = strconv.AppendInt(e.buf, rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.buf = strconv.AppendUint(e.buf, rv.Uint(), 10)
	case reflect.Float32:
		e.buf = appendPyFloat(e.buf, rv.Float(), 32)
	case reflect.Float64:
		e.buf = appendPyFloat(e.buf, rv.Float(), 64)
	case reflect.String:
		return e.string(rv.String())
	case reflect.Interface:
		if rv.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.value(rv.Elem().Interface())
	case reflect.Pointer:
		if rv.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		if e.ptrDepth++; e.ptrDepth > maxEncodePtrDepth {
			return fmt.Errorf("%w: pointer cycle through %s", ErrInvalidJSON, t)
		}
		err := e.reflectValue(rv.Elem())
		e.ptrDepth--
		return err
	case reflect.Slice:
		if rv.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 && !hasOwnJSON(reflect.PointerTo(t.Elem())) {
			e.bytes(rv.Bytes())
			return nil
		}
		return e.reflectList(rv)
	case reflect.Array:
		return e.reflectList(rv)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return e.viaEncodingJSON(rv.Interface())
		}
		if rv.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return e.reflectMap(rv)
	default: // structs, and kinds encoding/json refuses with a clear error
		if rv.CanAddr() {
			return e.viaEncodingJSON(rv.Addr().Interface())
		}
		return e.viaEncodingJSON(rv.Interface())
	}
	return nil
}

func (e *canonEncoder) reflectList(rv reflect.Value) error {
	if err := e.open(); err != nil {
		return err
	}
	e.buf = append(e.buf, '[')
	for i := range rv.Len() {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.reflectValue(rv.Index(i)); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	e.depth--
	return nil
}

func (e *canonEncoder) reflectMap(rv reflect.Value) error {
	if err := e.open(); err != nil {
		return err
	}
	type member struct {
		key string
		val reflect.Value
	}
	members := make([]member, 0, rv.Len())
	for iter := rv.MapRange(); iter.Next(); {
		members = append(members, member{iter.Key().String(), iter.Value()})
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	e.buf = append(e.buf, '{')
	for i, m := range members {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.string(m.key); err != nil {
			return err
		}
		e.buf = append(e.buf, ':')
		if err := e.reflectValue(m.val); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.depth--
	return nil
}

// viaEncodingJSON lets encoding/json decide what v looks like (struct tags,
// MarshalJSON, ...), then writes that text canonically.
func (e *canonEncoder) viaEncodingJSON(v any) error {
	text, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJSON, err)
	}
	decoded, err := DecodeJSON(text)
	if err != nil {
		return err
	}
	return e.value(decoded)
}
