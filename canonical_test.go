package gilmsg

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// canonicalCase is one line of testdata/canonical.jsonl.
type canonicalCase struct {
	Input     string `json:"input"`
	Canonical string `json:"canonical"`
}

// signedVector is the part of a testdata/vectors.jsonl line the codec needs.
type signedVector struct {
	Name       string `json:"name"`
	Body       string `json:"body"`
	SignedText string `json:"signed_text"`
}

// readCanonFixture decodes every line of testdata/file into a T. The fixtures
// are read with encoding/json so that the code under test does not judge
// its own inputs.
func readCanonFixture[T any](tb testing.TB, file string) []T {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			tb.Fatalf("%s: %v", file, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Fatalf("%s is empty", file)
	}
	return out
}

// mustCanonicalize runs CanonicalizeJSON and also checks that its result is a
// fixed point, which every canonical text must be.
func mustCanonicalize(t *testing.T, in string) string {
	t.Helper()
	got, err := CanonicalizeJSON([]byte(in))
	if err != nil {
		t.Fatalf("CanonicalizeJSON(%q): %v", in, err)
	}
	again, err := CanonicalizeJSON(got)
	if err != nil || string(again) != string(got) {
		t.Fatalf("CanonicalizeJSON(%q) = %q is not a fixed point: %q, %v", in, got, again, err)
	}
	return string(got)
}

func TestCanonicalFixtures(t *testing.T) {
	for _, c := range readCanonFixture[canonicalCase](t, "canonical.jsonl") {
		t.Run(c.Input, func(t *testing.T) {
			if got := mustCanonicalize(t, c.Input); got != c.Canonical {
				t.Errorf("got  %s\nwant %s", got, c.Canonical)
			}
		})
	}
}

// TestCanonicalSignedText reproduces the text Python fedmsg signed for every
// vector: the body decoded, less signature and certificate, re-encoded.
func TestCanonicalSignedText(t *testing.T) {
	for _, v := range readCanonFixture[signedVector](t, "vectors.jsonl") {
		t.Run(v.Name, func(t *testing.T) {
			decoded, err := DecodeJSON([]byte(v.Body))
			if err != nil {
				t.Fatal(err)
			}
			m, ok := decoded.(map[string]any)
			if !ok {
				t.Fatalf("body decoded to %T, want an object", decoded)
			}
			delete(m, "signature")
			delete(m, "certificate")
			got, err := MarshalCanonical(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != v.SignedText {
				t.Errorf("got  %s\nwant %s", got, v.SignedText)
			}
		})
	}
}

func TestCanonicalNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		// Floats: Python's repr.
		{"5e-324", "5e-324"},
		{"4.9406564584124654e-324", "5e-324"},
		{"1e22", "1e+22"},
		{"1e16", "1e+16"},
		{"1e15", "1000000000000000.0"},
		{"9999999999999998.0", "9999999999999998.0"},
		{"123456789012345680.0", "1.2345678901234568e+17"},
		{"0.1", "0.1"},
		{"-1e-7", "-1e-07"},
		{"0.0001", "0.0001"},
		{"0.00001", "1e-05"},
		{"1.5E+3", "1500.0"},
		{"-0.0", "-0.0"},
		{"0e0", "0.0"},
		{"1e-400", "0.0"},
		{"-1e-400", "-0.0"},
		{"1e400", "Infinity"},
		{"1" + strings.Repeat("0", 400) + ".5", "Infinity"},
		{"1e99999999999999999999", "Infinity"},
		{"0.30000000000000004", "0.30000000000000004"},
		{"3.141592653589793238462643383279", "3.141592653589793"},
		{"2.4703282292062327e-324", "0.0"}, // just under half the least subnormal
		{"2.4703282292062328e-324", "5e-324"},
		{"NaN", "NaN"},
		{"-Infinity", "-Infinity"},
		{" Infinity ", "Infinity"},
		// Integers: any size, written back as read.
		{"-0", "0"},
		{"0", "0"},
		{"-17", "-17"},
		{"9007199254740993", "9007199254740993"},
		{"18446744073709551617", "18446744073709551617"},
		{"-" + strings.Repeat("9", 4300), "-" + strings.Repeat("9", 4300)},
		{strings.Repeat("7", 4300), strings.Repeat("7", 4300)},
		// A fraction or exponent makes a float, however many digits.
		{strings.Repeat("7", 4301) + ".0", "Infinity"},
		{"[1,1.0,1e0,10E-1]", "[1,1.0,1.0,1.0]"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 40)], func(t *testing.T) {
			if got := mustCanonicalize(t, tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCanonicalStrings(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"controls", `"\u0000\u0001\b\t\n\u000b\f\r\u001f"`, `"\u0000\u0001\b\t\n\u000b\f\r\u001f"`},
		{"DEL raw", "\"a\x7fb\"", `"a\u007fb"`},
		{"DEL escaped", `"\u007F"`, `"\u007f"`},
		{"quote and backslash", `"\"\\"`, `"\"\\"`},
		{"slash unescaped", `"\/a/b"`, `"/a/b"`},
		{"html not escaped", `"<b>&amp;</b>"`, `"<b>&amp;</b>"`},
		{"latin1 raw", `"café"`, `"caf\u00e9"`},
		{"line separators", "\"\u2028\u2029\"", `"\u2028\u2029"`},
		{"BMP edge", "\"\uffff\"", `"\uffff"`},
		{"astral raw", `"😀"`, `"\ud83d\ude00"`},
		{"astral escaped upper hex", `"\uD83D\uDE00"`, `"\ud83d\ude00"`},
		{"last code point", "\"\U0010FFFF\"", `"\udbff\udfff"`},
		{"lone high", `"\ud800"`, `"\ud800"`},
		{"lone low", `"\udfff"`, `"\udfff"`},
		{"high then letter", `"\ud83dA"`, `"\ud83dA"`},
		{"high then escaped letter", `"\ud83d\u0041"`, `"\ud83dA"`},
		{"low then high", `"\ude00\ud83d"`, `"\ude00\ud83d"`},
		{"high high low", `"\ud800\ud800\udc00"`, `"\ud800\ud800\udc00"`},
		{"high at end of string", `"x\ud800"`, `"x\ud800"`},
		{"long plain run", `"` + strings.Repeat("abcdefgh", 9) + `é"`, `"` + strings.Repeat("abcdefgh", 9) + `\u00e9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustCanonicalize(t, tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDecodeJSONValues checks the Go types DecodeJSON promises, including
// the WTF-8 form of lone surrogates.
func TestDecodeJSONValues(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{`-0`, json.Number("0")},
		{`123456789012345678901234567890`, json.Number("123456789012345678901234567890")},
		{`1.5`, 1.5},
		{`1e2`, 100.0},
		{`true`, true},
		{`null`, nil},
		{`"\ud800"`, "\xed\xa0\x80"},
		{`"\udfff"`, "\xed\xbf\xbf"},
		{`"\ud83d\ude00"`, "😀"},
		{`"a\/b"`, "a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := DecodeJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
		})
	}
	t.Run("NaN", func(t *testing.T) {
		got, err := DecodeJSON([]byte("NaN"))
		if f, ok := got.(float64); err != nil || !ok || !math.IsNaN(f) {
			t.Errorf("got %#v, %v; want NaN", got, err)
		}
	})
	t.Run("duplicate keys", func(t *testing.T) {
		got, err := DecodeJSON([]byte(`{"a":1,"b":2,"a":{"c":3}}`))
		if err != nil {
			t.Fatal(err)
		}
		m := got.(map[string]any)
		if len(m) != 2 || m["b"] != json.Number("2") {
			t.Fatalf("got %#v", m)
		}
		if inner, ok := m["a"].(map[string]any); !ok || inner["c"] != json.Number("3") {
			t.Errorf("last duplicate did not win: %#v", m["a"])
		}
	})
	t.Run("input not aliased", func(t *testing.T) {
		in := []byte(`{"k":"value"}`)
		got, err := DecodeJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		copy(in, `{"x":"XXXXX"}`)
		if got.(map[string]any)["k"] != "value" {
			t.Errorf("decoded value changed with the input buffer: %#v", got)
		}
	})
}

func TestCanonicalKeyOrder(t *testing.T) {
	// Python sorts keys by code point: ASCII, then é (U+00E9), then the
	// lone surrogates, then U+E000, U+FFFF, then astral characters.
	in := `{"😀":0,"\uffff":1,"\ue000":2,"\udfff":3,"\ud800":4,"\ud7ff":5,"é":6,"z":7,"a":8,"Z":9,"10":10,"9":11,"":12,"\u0000":13}`
	want := `{"":12,"\u0000":13,"10":10,"9":11,"Z":9,"a":8,"z":7,"\u00e9":6,"\ud7ff":5,"\ud800":4,"\udfff":3,"\ue000":2,"\uffff":1,"\ud83d\ude00":0}`
	if got := mustCanonicalize(t, in); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDecodeJSONInvalid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		offset int64 // -1: not checked
	}{
		{"empty", "", 0},
		{"only spaces", "  \n", 3},
		{"trailing comma in array", "[1,2,]", 5},
		{"trailing comma in object", `{"a":1,}`, 7},
		{"leading comma", "[,1]", 1},
		{"missing comma", "[1 2]", 3},
		{"missing colon", `{"a" 1}`, 5},
		{"unquoted key", `{a:1}`, 1},
		{"single quotes", `{'a':1}`, 1},
		{"single-quoted string", `'a'`, 0},
		{"leading zero", "01", 1},
		{"leading zeros in array", "[00]", 2},
		{"negative leading zero", "-01", 2},
		{"plus sign", "+1", 0},
		{"bare fraction", ".5", 0},
		{"bare point", "1.", 2},
		{"point exponent", "1.e5", 2},
		{"empty exponent", "1e", 2},
		{"signed empty exponent", "1e+", 3},
		{"lone minus", "-", 1},
		{"minus letter", "-a", 1},
		{"hex", "0x10", 1},
		{"negative NaN", "-NaN", 1},
		{"lowercase nan", "nan", 0},
		{"infinity lowercase", "infinity", 0},
		{"truncated true", "tru", 0},
		{"capital True", "True", 0},
		{"raw newline in string", "\"a\nb\"", 2},
		{"raw tab in string", "\"a\tb\"", 2},
		{"raw NUL in string", "\"\x00\"", 1},
		{"raw control after escape", "\"\\n\x01\"", 3},
		{"bad escape", `"\x41"`, 1},
		{"escaped apostrophe", `"\'"`, 1},
		{"short unicode escape", `"\u12"`, 1},
		{"non-hex unicode escape", `"\u12G4"`, 1},
		{"high surrogate then bad escape", `"\ud800\u12"`, 7},
		{"backslash at end", `"\`, 0},
		{"unterminated string", `"abc`, 0},
		{"unterminated escaped string", `"a\nb`, 0},
		{"truncated object", `{"a":`, 5},
		{"truncated object after value", `{"a":1`, 6},
		{"truncated array", `[1,`, 3},
		{"unclosed array", `[`, 1},
		{"mismatched brackets", `[1}`, 2},
		{"invalid UTF-8 in string", "\"\xff\"", 1},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", 1},
		{"overlong UTF-8", "\"\xc0\xaf\"", 1},
		{"truncated UTF-8", "\"\xe2\x82\"", 1},
		{"invalid UTF-8 after value", "1\xff", 1},
		{"byte order mark", "\ufeff1", 0},
		{"extra value", "1 2", 2},
		{"two objects", "{}{}", 2},
		{"comment", "1 // x", 2},
		{"vertical tab as space", "\v1", 0},
		{"non-breaking space", "\u00a01", 0},
		{"too deep arrays", strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1), MaxJSONDepth},
		{"too deep objects", strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1), -1},
		{"too many digits", strings.Repeat("1", 4301), 0},
		{"too many negative digits", "[-" + strings.Repeat("1", 4301) + "]", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := DecodeJSON([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeJSON(%q) = %#v, want an error", tt.in, v)
			}
			if !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("error %v does not match ErrInvalidJSON", err)
			}
			var se *JSONSyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *JSONSyntaxError", err)
			}
			if tt.offset >= 0 && se.Offset != tt.offset {
				t.Errorf("offset %d, want %d (%v)", se.Offset, tt.offset, err)
			}
			if !strings.HasPrefix(err.Error(), "gilmsg: invalid JSON: offset ") {
				t.Errorf("message %q lacks the offset prefix", err)
			}
			if _, err := CanonicalizeJSON([]byte(tt.in)); !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("CanonicalizeJSON error %v does not match ErrInvalidJSON", err)
			}
		})
	}
}

func TestDecodeJSONDepthLimit(t *testing.T) {
	deepest := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if got := mustCanonicalize(t, deepest); got != deepest {
		t.Errorf("nesting of exactly MaxJSONDepth changed: %.40s...", got)
	}
}

type canonTagged struct {
	Name    string            `json:"name"`
	Count   int               `json:"count,omitempty"`
	Skip    string            `json:"-"`
	Labels  map[string]string `json:"labels"`
	Ratio   float64           `json:"ratio"`
	private int
}

type canonLevel int

type canonTextKey struct{ s string }

func (k canonTextKey) MarshalText() ([]byte, error) { return []byte("<" + k.s + ">"), nil }

func TestMarshalCanonicalGoValues(t *testing.T) {
	var nilMap map[string]any
	answer := 42
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"float64 integral", float64(1), `1.0`},
		{"float64 big", 1e22, `1e+22`},
		{"float64 NaN", math.NaN(), `NaN`},
		{"float64 -Inf", math.Inf(-1), `-Infinity`},
		{"float32 shortest", float32(0.1), `0.1`},
		{"float32 integral", float32(3), `3.0`},
		{"int64 min", int64(math.MinInt64), `-9223372036854775808`},
		{"uint64 max", uint64(math.MaxUint64), `18446744073709551615`},
		{"int8", int8(-8), `-8`},
		{"uint8", uint8(200), `200`},
		{"big.Int", new(big.Int).Lsh(big.NewInt(-1), 100), `-1267650600228229401496703205376`},
		{"nil big.Int", (*big.Int)(nil), `null`},
		{"json.Number int", json.Number("-0"), `0`},
		{"json.Number float", json.Number("1E2"), `100.0`},
		{"RawMessage", json.RawMessage(` {"b": [1.0, 2], "a": "\u00e9"} `), `{"a":"\u00e9","b":[1.0,2]}`},
		{"nil RawMessage", json.RawMessage(nil), `null`},
		{"bytes", []byte("hi\xff"), `"aGn/"`},
		{"string", "tab\t\U0001F600 \xed\xa0\x80", `"tab\t\ud83d\ude00 \ud800"`},
		{"map[string]string", map[string]string{"b": "2", "a": "1", "é": "3"}, `{"a":"1","b":"2","\u00e9":"3"}`},
		{"nil map", nilMap, `null`},
		{"empty map", map[string]any{}, `{}`},
		{"[]string", []string{"x", "<y>"}, `["x","<y>"]`},
		{"nil []any", []any(nil), `null`},
		{"nested []any", []any{1, []any{2.0, map[string]any{"z": nil, "a": []any{}}}, "s"}, `[1,[2.0,{"a":[],"z":null}],"s"]`},
		{"[]float64", []float64{1, 0.5}, `[1.0,0.5]`},
		{"[2]int array", [2]int{3, 4}, `[3,4]`},
		{"map[string]int", map[string]int{"b": 1, "a": 2}, `{"a":2,"b":1}`},
		{"named int", canonLevel(3), `3`},
		{"pointer", &answer, `42`},
		{"nil pointer", (*int)(nil), `null`},
		{"struct with tags", canonTagged{Name: "n", Skip: "s", Labels: map[string]string{"k": "v"}, Ratio: 0.5, private: 1}, `{"labels":{"k":"v"},"name":"n","ratio":0.5}`},
		{"struct pointer", &canonTagged{Name: "<&>", Count: 2}, `{"count":2,"labels":null,"name":"<&>","ratio":0}`},
		{"TextMarshaler", canonTextKey{"k"}, `"<k>"`},
		{"int keys", map[int]string{10: "a", 9: "b"}, `{"10":"a","9":"b"}`},
		{"map of structs", map[string]canonTagged{"x": {Name: "y"}}, `{"x":{"labels":null,"name":"y","ratio":0}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MarshalCanonical(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if again := mustCanonicalize(t, string(got)); again != string(got) {
				t.Errorf("output is not canonical: %s", again)
			}
		})
	}
}

func TestMarshalCanonicalErrors(t *testing.T) {
	cyclicMap := map[string]any{}
	cyclicMap["self"] = cyclicMap
	cyclicSlice := []any{nil}
	cyclicSlice[0] = cyclicSlice
	var cyclicPtr any
	cyclicPtr = &cyclicPtr
	tooDeep := any("x")
	for range MaxJSONDepth + 1 {
		tooDeep = []any{tooDeep}
	}
	tests := []struct {
		name string
		in   any
	}{
		{"channel", make(chan int)},
		{"function", func() {}},
		{"complex", complex(1, 2)},
		{"channel in a map", map[string]any{"c": make(chan int)}},
		{"cyclic map", cyclicMap},
		{"cyclic slice", cyclicSlice},
		{"cyclic pointer", cyclicPtr},
		{"too deep", tooDeep},
		{"invalid UTF-8 string", "a\xffb"},
		{"invalid UTF-8 key", map[string]any{"\xc3": 1}},
		{"truncated rune", "\xe2\x82"},
		{"split surrogate pair", "\xed\xa0\xbd\xed\xb8\x80"},
		{"bad json.Number", json.Number("1.")},
		{"empty json.Number", json.Number("")},
		{"json.Number with space", json.Number("1 ")},
		{"json.Number NaN", json.Number("NaN")},
		{"long json.Number", json.Number(strings.Repeat("9", 4301))},
		{"huge big.Int", new(big.Int).Exp(big.NewInt(10), big.NewInt(4300), nil)},
		{"invalid RawMessage", json.RawMessage(`{"a":}`)},
		{"NaN in a struct", struct{ F float64 }{math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := AppendCanonical(dst, tt.in)
			if err == nil {
				t.Fatalf("got %s, want an error", got)
			}
			if !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("error %v does not match ErrInvalidJSON", err)
			}
			if string(got) != "prefix" {
				t.Errorf("dst became %q on error, want it unchanged", got)
			}
		})
	}
}

func TestAppendCanonicalAppends(t *testing.T) {
	got, err := AppendCanonical([]byte("x="), map[string]any{"b": 1, "a": []any{true}})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `x={"a":[true],"b":1}` {
		t.Errorf("got %s", got)
	}
}

// TestCanonicalConcurrent runs the pooled decoder and encoder from several
// goroutines at once, for the race detector and for cross-talk in the pools.
func TestCanonicalConcurrent(t *testing.T) {
	vectors := readCanonFixture[signedVector](t, "vectors.jsonl")
	want := make([]string, len(vectors))
	for i, v := range vectors {
		want[i] = mustCanonicalize(t, v.Body)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for round := range 20 {
				i := (g + round) % len(vectors)
				got, err := CanonicalizeJSON([]byte(vectors[i].Body))
				if err == nil && string(got) != want[i] {
					err = fmt.Errorf("%s: got %.80s", vectors[i].Name, got)
				}
				if err != nil {
					errs <- err
					return
				}
				// An error leaves members on the pooled decoder's stacks.
				if _, err := DecodeJSON([]byte(`{"a":[1,{"b":`)); err == nil {
					errs <- errors.New("a truncated text decoded")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// canonBenchBody is a real signed fedmsg body from the vectors, certificate and
// signature included, as it arrives on the wire (about 2 KB).
func canonBenchBody(b *testing.B) []byte {
	b.Helper()
	for _, v := range readCanonFixture[signedVector](b, "vectors.jsonl") {
		if v.Name == "signed/nested" {
			return []byte(v.Body)
		}
	}
	b.Fatal("vector signed/nested not found")
	return nil
}

func BenchmarkDecodeJSON(b *testing.B) {
	body := canonBenchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	v, err := DecodeJSON(canonBenchBody(b))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = AppendCanonical(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkCanonicalizeJSON(b *testing.B) {
	body := canonBenchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CanonicalizeJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSONBaseline is the same round trip with encoding/json,
// which gets the text wrong but sets the bar for speed.
func BenchmarkEncodingJSONBaseline(b *testing.B) {
	body := canonBenchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// canonPlainRun agrees with plainStringByte on every byte in every
// position of a word: it stops exactly at a byte that needs escaping.
func TestCanonPlainRun(t *testing.T) {
	for c := range 256 {
		for pos := range 8 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			want := pos
			if plainStringByte[c] {
				want = 8
			}
			if got := canonPlainRun(string(b), 0); got != want {
				t.Fatalf("byte 0x%02x at %d: run %d, want %d", c, pos, got, want)
			}
		}
	}
}

// jsonPlainRun skips a word exactly when none of its bytes is one the
// decoder must look at: a control, '"', '\\' or non-ASCII.
func TestJSONPlainRun(t *testing.T) {
	for c := range 256 {
		plain := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
		for pos := range 8 {
			b := []byte("abcdefghijklmnop")
			b[pos] = byte(c)
			want := 16
			if !plain {
				want = 0
			}
			if got := jsonPlainRun(string(b), 0); got != want {
				t.Fatalf("byte 0x%02x at %d: run %d, want %d", c, pos, got, want)
			}
		}
	}
}

// Strings and integers decoded from one document share their headers'
// allocations (jsonDecoder.box): a payload of 16 short strings and numbers
// costs its maps and arrays plus one chunk, not one allocation per value.
func TestDecodeJSONBoxesInChunks(t *testing.T) {
	text := `{"a":"1","b":"2","c":"3","d":"4","e":[5,6,7,8],"f":"9","g":"10","h":11,"i":12,"j":"13","k":"14","l":"15"}`
	// 8 with box: the text's copy, the 12-key map (4), the array, one
	// chunk; 21 when each of the 14 values was its own allocation.
	const limit = 10
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DecodeJSON([]byte(text)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > limit {
		t.Errorf("%v allocations, want at most %d", allocs, limit)
	}
	v, _ := DecodeJSON([]byte(text))
	m := v.(map[string]any)
	if m["a"] != "1" || m["h"] != json.Number("11") || m["e"].([]any)[3] != json.Number("8") {
		t.Errorf("decoded %#v", m)
	}
}
