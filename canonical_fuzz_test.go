package gilmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCanonicalJSON checks that decoding never panics, that the canonical
// text is a fixed point, and that the decoder agrees with encoding/json
// wherever the two are meant to agree.
func FuzzCanonicalJSON(f *testing.F) {
	for _, c := range readCanonFixture[canonicalCase](f, "canonical.jsonl") {
		f.Add([]byte(c.Input))
	}
	for _, v := range readCanonFixture[signedVector](f, "vectors.jsonl") {
		f.Add([]byte(v.Body))
	}
	for _, s := range []string{
		`"\ud800\udc00\udc00\ud800"`, `[NaN,-Infinity,1e400,-0,0.0]`,
		"\"\x7f\u2028\U0001F600\"", `{"a":{"a":[{}]},"":""}`, `"\u0000\/"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := DecodeJSON(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("error %v does not match ErrInvalidJSON", err)
			}
			// encoding/json may accept more only for reasons documented:
			// invalid UTF-8 (it substitutes U+FFFD), nesting, long integers.
			if json.Valid(in) && utf8.Valid(in) &&
				!strings.Contains(err.Error(), "nesting deeper") &&
				!strings.Contains(err.Error(), "digits, more than") {
				t.Fatalf("encoding/json accepts %q but DecodeJSON says %v", in, err)
			}
			return
		}
		c1, err := MarshalCanonical(v)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", in, err)
		}
		if c, err := CanonicalizeJSON(in); err != nil || !bytes.Equal(c, c1) {
			t.Fatalf("CanonicalizeJSON(%q) = %q, %v; want %q", in, c, err, c1)
		}
		c2, err := CanonicalizeJSON(c1)
		if err != nil || !bytes.Equal(c2, c1) {
			t.Fatalf("canonical text %q of %q is not a fixed point: %q, %v", c1, in, c2, err)
		}
		if !utf8.Valid(in) {
			t.Fatalf("accepted invalid UTF-8 %q", in)
		}
		if !json.Valid(in) {
			// Only Python's non-finite literals are JSON to us and not to it.
			if !hasNonFinite(v) {
				t.Fatalf("DecodeJSON accepts %q, which encoding/json rejects", in)
			}
			return
		}
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var std any
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if path, ok := sameAsStdJSON(v, std); !ok {
			t.Fatalf("DecodeJSON(%q) and encoding/json differ at %s:\n%#v\n%#v", in, path, v, std)
		}
	})
}

func hasNonFinite(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x) || math.IsInf(x, 0)
	case []any:
		for _, e := range x {
			if hasNonFinite(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasNonFinite(e) {
				return true
			}
		}
	}
	return false
}

// sameAsStdJSON compares our decoding with encoding/json's (with UseNumber).
// Strings holding a lone surrogate are not compared: encoding/json turns it
// into U+FFFD, which is the very reason this decoder exists.
func sameAsStdJSON(ours, std any) (path string, ok bool) {
	switch x := ours.(type) {
	case json.Number:
		n, isNum := std.(json.Number)
		if !isNum || (string(x) != string(n) && !(x == "0" && n == "-0")) {
			return "", false
		}
	case float64:
		n, isNum := std.(json.Number)
		if !isNum {
			return "", false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return "", false
		}
		if math.Float64bits(f) != math.Float64bits(x) {
			return "", false
		}
	case string:
		s, isStr := std.(string)
		if !isStr || (utf8.ValidString(x) && s != x) {
			return "", false
		}
	case []any:
		a, isArr := std.([]any)
		if !isArr || len(a) != len(x) {
			return "", false
		}
		for i := range x {
			if p, ok := sameAsStdJSON(x[i], a[i]); !ok {
				return "[" + strconv.Itoa(i) + "]" + p, false
			}
		}
	case map[string]any:
		m, isObj := std.(map[string]any)
		if !isObj {
			return "", false
		}
		// encoding/json names a key with a lone surrogate with U+FFFD, so it
		// may merge with others: then only keys without U+FFFD compare.
		lone := false
		for k := range x {
			lone = lone || !utf8.ValidString(k)
		}
		if !lone && len(m) != len(x) {
			return "", false
		}
		for k, e := range x {
			if lone && (!utf8.ValidString(k) || strings.ContainsRune(k, utf8.RuneError)) {
				continue
			}
			if p, ok := sameAsStdJSON(e, m[k]); !ok {
				return "." + strconv.Quote(k) + p, false
			}
		}
	default: // nil, bool
		return "", ours == std
	}
	return "", true
}
