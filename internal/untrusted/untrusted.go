// Package untrusted cuts what a peer chose (a key, a topic, a msg_id, an
// encoding name) to a length one log line or error can quote: enough to
// recognise it, never its size. 50 replay requests with a 1 MB key once
// wrote 50 MB to stderr, and echoed each key back.
package untrusted

import (
	"log/slog"
	"strconv"
	"unicode/utf8"
)

// MaxQuoted bounds how many bytes of a peer's input are quoted.
const MaxQuoted = 64

// Cut returns s's first MaxQuoted bytes (whole runes) and what to say
// after them: "" when s is that short, else its length.
func Cut(s string) (head, more string) {
	if len(s) <= MaxQuoted {
		return s, ""
	}
	cut := MaxQuoted
	for cut > MaxQuoted-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Quote is s quoted as %q does, cut by [Cut].
func Quote(s string) string {
	head, more := Cut(s)
	return strconv.Quote(head) + more
}

// Attr is a log attribute for a string a peer chose, cut by [Cut].
func Attr(key, s string) slog.Attr {
	head, more := Cut(s)
	return slog.String(key, head+more)
}
