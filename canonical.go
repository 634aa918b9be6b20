package gilmsg

import (
	"strconv"
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

func (e *JSONSyntaxError) Error() string { return "gilmsg: " + e.causeText() }

func (e *JSONSyntaxError) causeText() string {
	return "invalid JSON: offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
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
	return appendCanonicalAt(dst, v, 0)
}

// appendCanonicalAt is AppendCanonical for a value that will sit depth
// levels deep in a larger text: its nesting counts from there.
func appendCanonicalAt(dst []byte, v any, depth int) ([]byte, error) {
	e := canonEncoderPool.Get().(*canonEncoder)
	e.buf, e.depth, e.ptrDepth = dst, depth, 0
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
