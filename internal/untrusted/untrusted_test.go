package untrusted

import (
	"strings"
	"testing"
)

// TestQuote: what a peer chose appears in logs and errors cut.
func TestQuote(t *testing.T) {
	long := strings.Repeat("é", 1<<19) // 1 MB, two bytes a rune
	for _, tc := range []struct{ in, want string }{
		{"bodhi", `"bodhi"`},
		{long, `"` + strings.Repeat("é", 32) + `"... (1048576 bytes)`},
		{"a" + long, `"a` + strings.Repeat("é", 31) + `"... (1048577 bytes)`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%.20q...) = %.100q, want %q", tc.in, got, tc.want)
		}
	}
}
