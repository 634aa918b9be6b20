package amqpbridge

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gilmsg/gilmsg-go/internal/untrusted"
)

// fedora-messaging decodes a body with Python's bytes.decode under the
// message's content_encoding (utf-8 when absent), so any Python text codec
// is accepted there. These are the ones decoded here, with the names
// Python knows them by after its normalization (encodings.aliases); the
// rest are refused by name.
var bodyEncodings = map[string]string{
	"utf_8": "utf-8", "u8": "utf-8", "utf": "utf-8", "utf8": "utf-8", "cp65001": "utf-8",
	"utf8_ucs2": "utf-8", "utf8_ucs4": "utf-8",
	"utf_8_sig": "utf-8-sig",
	"ascii":     "ascii", "646": "ascii", "ansi_x3.4_1968": "ascii", "ansi_x3.4_1986": "ascii",
	"ansi_x3_4_1968": "ascii", "cp367": "ascii", "csascii": "ascii", "ibm367": "ascii", "iso646_us": "ascii",
	"iso_646.irv_1991": "ascii", "iso_ir_6": "ascii", "us": "ascii", "us_ascii": "ascii",
	"latin_1": "latin-1", "8859": "latin-1", "cp819": "latin-1", "csisolatin1": "latin-1", "ibm819": "latin-1",
	"iso8859": "latin-1", "iso8859_1": "latin-1", "iso_8859_1": "latin-1", "iso_8859_1_1987": "latin-1",
	"iso_ir_100": "latin-1", "l1": "latin-1", "latin": "latin-1", "latin1": "latin-1",
	"cp1252": "cp1252", "1252": "cp1252", "windows_1252": "cp1252",
	"utf_16": "utf-16", "u16": "utf-16", "utf16": "utf-16",
	"utf_16_le": "utf-16-le", "utf_16le": "utf-16-le", "unicodelittleunmarked": "utf-16-le",
	"utf_16_be": "utf-16-be", "utf_16be": "utf-16-be", "unicodebigunmarked": "utf-16-be",
}

// bodyEncodingNames lists the codecs [decodeBody] knows, for error texts.
const bodyEncodingNames = "utf-8, utf-8-sig, ascii, latin-1, cp1252, utf-16, utf-16-le, utf-16-be"

// pythonCodecName normalizes an encoding name as Python's codec lookup
// does: lower case, each run of characters other than letters, digits
// and dots one underscore, none at either end.
func pythonCodecName(name string) string {
	var b strings.Builder
	punct := false
	for _, c := range strings.ToLower(name) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' {
			if punct && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(c)
			punct = false
		} else {
			punct = true
		}
	}
	return b.String()
}

// decodeBody returns body as UTF-8, decoded as fedora-messaging decodes
// it under content_encoding encoding ("" is absent: utf-8). An encoding it
// does not know is a [*DropError] naming it; so is a body that is not
// valid in its encoding. id is the message's, for the error.
func decodeBody(body []byte, encoding, id string) ([]byte, error) {
	codec := "utf-8"
	if encoding != "" {
		n := pythonCodecName(encoding)
		c, ok := bodyEncodings[n]
		if !ok {
			c, ok = bodyEncodings[strings.ReplaceAll(n, ".", "_")]
		}
		if !ok {
			return nil, &DropError{MsgID: id, Reason: ErrBadEncoding,
				Detail: fmt.Sprintf("content_encoding %s (known: %s)", untrusted.Quote(encoding), bodyEncodingNames)}
		}
		codec = c
	}
	bad := func(err error) error {
		return &DropError{MsgID: id, Reason: ErrBadBody, Detail: fmt.Sprintf("not %s: %v", codec, err)}
	}
	switch codec {
	case "utf-8-sig":
		body = bytes.TrimPrefix(body, []byte("\ufeff"))
		fallthrough
	case "utf-8":
		if !utf8.Valid(body) {
			return nil, bad(errors.New("invalid UTF-8"))
		}
		return body, nil
	case "ascii":
		for i, c := range body {
			if c >= 0x80 {
				return nil, bad(fmt.Errorf("byte 0x%02x at %d", c, i))
			}
		}
		return body, nil
	case "latin-1":
		out := make([]byte, 0, len(body)+len(body)/4)
		for _, c := range body {
			out = utf8.AppendRune(out, rune(c))
		}
		return out, nil
	case "cp1252":
		out := make([]byte, 0, len(body)+len(body)/4)
		for i, c := range body {
			r := rune(c)
			if c >= 0x80 && c < 0xa0 {
				if r = cp1252High[c-0x80]; r == 0 {
					return nil, bad(fmt.Errorf("byte 0x%02x at %d is undefined", c, i))
				}
			}
			out = utf8.AppendRune(out, r)
		}
		return out, nil
	default:
		return decodeUTF16(body, codec, id)
	}
}

// cp1252High maps the bytes 0x80-0x9f of windows-1252 as Python's cp1252
// does; 0 marks the five it leaves undefined.
var cp1252High = [32]rune{
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
	0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
}

// decodeUTF16 decodes strictly, as Python does: an odd length or a lone
// surrogate is an error. Plain utf-16 takes its byte order from a BOM,
// which it drops, and is little-endian without one (Python's native order
// on the x86 and ARM hosts fedora-messaging runs on).
func decodeUTF16(body []byte, codec, id string) ([]byte, error) {
	bad := func(detail string) error {
		return &DropError{MsgID: id, Reason: ErrBadBody, Detail: fmt.Sprintf("not %s: %s", codec, detail)}
	}
	if len(body)%2 != 0 {
		return nil, bad("odd length")
	}
	big := codec == "utf-16-be"
	if codec == "utf-16" && len(body) >= 2 {
		switch {
		case body[0] == 0xff && body[1] == 0xfe:
			body = body[2:]
		case body[0] == 0xfe && body[1] == 0xff:
			body, big = body[2:], true
		}
	}
	units := make([]uint16, len(body)/2)
	for i := range units {
		if big {
			units[i] = uint16(body[2*i])<<8 | uint16(body[2*i+1])
		} else {
			units[i] = uint16(body[2*i+1])<<8 | uint16(body[2*i])
		}
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(units); i++ {
		r := rune(units[i])
		if utf16.IsSurrogate(r) {
			if i+1 < len(units) {
				r = utf16.DecodeRune(r, rune(units[i+1]))
			}
			if r == utf8.RuneError {
				return nil, bad("lone surrogate at unit " + strconv.Itoa(i))
			}
			i++
		}
		out = utf8.AppendRune(out, r)
	}
	return out, nil
}
