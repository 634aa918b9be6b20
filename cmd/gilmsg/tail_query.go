package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// tail's --query and --terse, which print what fedmsg-tail prints for them.

// tailFormat returns the formatter --terse or --query asks for (--terse
// wins, as in fedmsg-tail), or nil for neither.
func tailFormat(query string, terse bool) func(*gilmsg.Message) ([]byte, error) {
	switch {
	case terse:
		return func(m *gilmsg.Message) ([]byte, error) { return []byte(terseLine(m.Topic)), nil }
	case query != "":
		return func(m *gilmsg.Message) ([]byte, error) { return []byte(queryLine(m.Fields(), query)), nil }
	}
	return nil
}

// terseLine is fedmsg.meta.msg2repr without message processors (fedmsg's
// own "unhandled" one): "<title> -- <subtitle> <link>", the title being
// the topic past its prefix and environment, subtitle and link empty.
func terseLine(topic string) string {
	title := topic
	if !strings.HasPrefix(topic, "/topic/") {
		parts := strings.Split(topic, ".")
		title = strings.Join(parts[min(3, len(parts)):], ".")
	}
	return title + " --  "
}

// queryLine is fedmsg-tail --query: each comma-separated dotted path looked
// up in the envelope as fedmsg.utils.dict_query does (missing: None), the
// values written as Python's str() writes them, joined with ", ".
func queryLine(fields map[string]any, query string) string {
	var out []string
	for _, q := range strings.Split(query, ",") {
		out = append(out, pyStr(dictQuery(fields, strings.Split(strings.TrimSpace(q), "."))))
	}
	return strings.Join(out, ", ")
}

func dictQuery(d map[string]any, path []string) any {
	v, ok := d[path[0]]
	if len(path) == 1 || !ok {
		return v
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	return dictQuery(sub, path[1:])
}

// pyStr is Python's str() of a decoded JSON value: a string as is, the
// rest as repr().
func pyStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	var b strings.Builder
	pyRepr(&b, v)
	return b.String()
}

// pyRepr writes Python's repr() of a decoded JSON value. Objects keep
// the order of the signed message, which is sorted.
func pyRepr(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if v {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case json.Number:
		b.WriteString(v.String())
	case float64:
		b.WriteString(pyFloat(v))
	case string:
		b.WriteString(pyQuote(v))
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			pyRepr(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyQuote(k))
			b.WriteString(": ")
			pyRepr(b, v[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, v)
	}
}

// pyFloat is Python's repr() of a float: the shortest digits that read
// back the same, positional from 1e-4 up to 1e16, with ".0" if integral.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expText, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expText)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}

// pyQuote is Python's repr() of a str: single quotes unless the text has
// a single quote and no double one; printable characters as they are.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			// A lone surrogate kept as WTF-8: Python shows \udxxx.
			if i+3 <= len(s) {
				if r := decodeWTF8(s[i : i+3]); r != 0 {
					fmt.Fprintf(&b, `\u%04x`, r)
					i += 3
					continue
				}
			}
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		i += n
		esc, isEsc := pyEscapes[r]
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case isEsc:
			b.WriteString(esc)
		case r == ' ' || (unicode.IsPrint(r) && r != utf8.RuneError):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

var pyEscapes = map[rune]string{'\n': `\n`, '\r': `\r`, '\t': `\t`}

// decodeWTF8 returns the surrogate s encodes in three bytes, or 0.
func decodeWTF8(s string) rune {
	if s[0] != 0xed || s[1]&0xe0 != 0xa0 || s[2]&0xc0 != 0x80 {
		return 0
	}
	return rune(s[0]&0x0f)<<12 | rune(s[1]&0x3f)<<6 | rune(s[2]&0x3f)
}
