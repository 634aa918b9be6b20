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
	"unicode/utf8"
)

// The encoder: Python's json.dumps(sort_keys=True, separators=(",", ":")).

type canonEncoder struct {
	buf      []byte
	keys     []string // stack of the sorted keys of the maps being written
	members  []member // the same for map[string]any, with their values
	depth    int      // arrays and objects open
	ptrDepth int      // pointers followed, to stop on a cycle of pointers
}

func (e *canonEncoder) release() {
	if cap(e.keys) > codecPoolMaxStack || cap(e.members) > codecPoolMaxStack {
		return
	}
	clear(e.keys)
	clear(e.members)
	*e = canonEncoder{keys: e.keys[:0], members: e.members[:0]}
	canonEncoderPool.Put(e)
}

// maxEncodePtrDepth bounds pointer chains, which nest no JSON but can be
// cyclic.
const maxEncodePtrDepth = 1000

// canonicalText is JSON already in canonical form, MarshalCanonical's own
// output: the encoder appends it as it is, so a publisher encodes its
// payload once.
type canonicalText []byte

func (e *canonEncoder) value(v any) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case string:
		return e.string(x)
	case map[string]any:
		return e.object(x)
	case []any:
		return encodeSlice(e, x, e.value)
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
	case canonicalText:
		e.buf = append(e.buf, x...)
	case json.RawMessage:
		return e.raw(x)
	case []byte:
		e.bytes(x)
	case []string:
		return encodeSlice(e, x, e.string)
	case map[string]string:
		return encodeMap(e, x, e.string)
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

// encodeMap writes m's keys in order, each value with elem: one body for
// map[string]any and map[string]string.
func encodeMap[V any](e *canonEncoder, m map[string]V, elem func(V) error) error {
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
		if err := elem(m[k]); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.popKeys(keys)
	e.depth--
	return nil
}

// member is one key of a map[string]any with its value.
type member struct {
	key string
	val any
}

// object is encodeMap for map[string]any, the maps of every envelope and
// decoded payload: it takes each value with its key, where encodeMap looks
// every key up again once sorted.
func (e *canonEncoder) object(m map[string]any) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.open(); err != nil {
		return err
	}
	members := e.pushSortedMembers(m)
	e.buf = append(e.buf, '{')
	for i, kv := range members {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.string(kv.key); err != nil {
			return err
		}
		e.buf = append(e.buf, ':')
		if err := e.value(kv.val); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.popMembers(members)
	e.depth--
	return nil
}

// pushSortedMembers is pushSortedKeys for map[string]any, on the member
// stack.
func (e *canonEncoder) pushSortedMembers(m map[string]any) []member {
	base := len(e.members)
	for k, v := range m {
		e.members = append(e.members, member{k, v})
	}
	members := e.members[base:]
	if len(members) > 12 {
		slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
		return members
	}
	// Insertion sort, as slices.Sort does for so few, without a call per
	// comparison.
	for i := 1; i < len(members); i++ {
		for j := i; j > 0 && members[j].key < members[j-1].key; j-- {
			members[j], members[j-1] = members[j-1], members[j]
		}
	}
	return members
}

func (e *canonEncoder) popMembers(members []member) {
	clear(members)
	e.members = e.members[:len(e.members)-len(members)]
}

// encodeSlice writes a's elements with elem: one body for []any and
// []string.
func encodeSlice[V any](e *canonEncoder, a []V, elem func(V) error) error {
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
		if err := elem(v); err != nil {
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

// canonPlainRun returns the index of the first byte at or after i that is
// not a plainStringByte, or len(s): whole words first (jsonSpecial, and
// DEL), then byte by byte.
func canonPlainRun(s string, i int) int {
	for i+8 <= len(s) {
		x := load8(s, i)
		del := x ^ (swarOnes * 0x7F)
		if (jsonSpecial(x)|((del-swarOnes)&^del))&swarHighs != 0 {
			break
		}
		i += 8
	}
	for i < len(s) && plainStringByte[s[i]] {
		i++
	}
	return i
}

func (e *canonEncoder) string(s string) error {
	b := append(e.buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = canonPlainRun(s, i); i == len(s) {
			break
		}
		c := s[i]
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
