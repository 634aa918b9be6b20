// Package jsonval reads the values gilmsg.DecodeJSON returns (json.Number,
// *big.Int, float64, strings, []any, map[string]any): integers as a peer
// may send them, and a value's JSON type for refusals. The root's envelope
// decoding and the replay server's request parsing both judge a peer's
// JSON; this is the one place that says how.
package jsonval

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
)

// Int64 accepts integers, and floats with an integral value (Python's
// int(time.time()) is an int, but older peers sent floats). Its error
// names what v was instead, with no prefix: callers add their context.
func Int64(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("integer %s out of range", n)
		}
		return i, nil
	case float64:
		if n != n || n < -1<<63 || n >= 1<<63 || n != float64(int64(n)) {
			return 0, fmt.Errorf("non-integral number %v", n)
		}
		return int64(n), nil
	default:
		return 0, fmt.Errorf("%s", Kind(v))
	}
}

// Kind names the JSON type of a decoded value, for error messages.
func Kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64, *big.Int:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
