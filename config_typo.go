package gilmsg

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
)

// unknownKeyError is errUnknownKey with the known key key was probably
// meant to be, when one is close.
func unknownKeyError(key string) error {
	if guess := closestKey(key); guess != "" {
		return fmt.Errorf("%w; did you mean %q?", errUnknownKey, guess)
	}
	return errUnknownKey
}

// closestKey returns the key of Config or fedmsg nearest to key, within
// two edits (a swap of neighbours is one) and a third of key's length.
func closestKey(key string) string {
	best, bestD := "", 3
	consider := func(k string) {
		if d := editDistance(key, k); d < bestD && d*3 <= len(key) {
			best, bestD = k, d
		}
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range configFieldIndex() {
			if !yield(k) {
				return
			}
		}
	}) {
		consider(k)
	}
	for _, k := range fedmsgOtherKeys {
		consider(k)
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // no key is that long: not worth the work
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// warnUnknownKeys logs each key of cfg that neither Config nor fedmsg
// knows, with the file it came from and the key it probably meant.
func warnUnknownKeys(log *slog.Logger, cfg *Config) {
	for _, key := range cfg.UnknownKeys() {
		attrs := []any{slog.String("key", key)}
		if f := cfg.keyFiles[key]; f != "" {
			attrs = append(attrs, slog.String("file", f))
		}
		if guess := closestKey(key); guess != "" {
			attrs = append(attrs, slog.String("did_you_mean", guess))
		}
		log.Warn("gilmsg: unknown config key, ignored", attrs...)
	}
}

// defaultWarnings is a bus's logger without WithLogger: records of level
// Warn and above go to slog.Default() as it is when they are logged.
type defaultWarnings struct {
	attrs []slog.Attr
	group string
}

func (h defaultWarnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && slog.Default().Handler().Enabled(ctx, l)
}

func (h defaultWarnings) Handle(ctx context.Context, r slog.Record) error {
	d := slog.Default().Handler()
	if h.group != "" {
		d = d.WithGroup(h.group)
	}
	if len(h.attrs) > 0 {
		d = d.WithAttrs(h.attrs)
	}
	return d.Handle(ctx, r)
}

func (h defaultWarnings) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(slices.Clip(h.attrs), as...)
	return h
}

func (h defaultWarnings) WithGroup(name string) slog.Handler {
	if h.group != "" || len(h.attrs) > 0 {
		// Rare (the bus makes no groups): keep it simple and right.
		return slog.Default().Handler().WithAttrs(h.attrs).WithGroup(name)
	}
	h.group = name
	return h
}
