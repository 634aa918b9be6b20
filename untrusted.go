package gilmsg

import (
	"log/slog"
	"strconv"
	"unicode/utf8"
)

// maxQuoted bounds how much of a peer's input one log line or error
// quotes: enough to recognise it, never its size. 50 replay requests with a
// 1 MB key wrote 50 MB to stderr, and echoed each key back.
const maxQuoted = 64

// cutShort returns s's first maxQuoted bytes (whole runes) and what to
// say after them: "" when s is that short, else its length.
func cutShort(s string) (head, more string) {
	if len(s) <= maxQuoted {
		return s, ""
	}
	cut := maxQuoted
	for cut > maxQuoted-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// quoteShort is s quoted as %q does, cut by [cutShort].
func quoteShort(s string) string {
	head, more := cutShort(s)
	return strconv.Quote(head) + more
}

// shortAttr is a log attribute for a string a peer chose (a topic, a
// msg_id), cut by [cutShort].
func shortAttr(key, s string) slog.Attr {
	head, more := cutShort(s)
	return slog.String(key, head+more)
}
