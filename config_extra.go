package gilmsg

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// ExtraInt reads an integer key of [Config.Extra] (a key of another
// fedmsg component, such as "fedmsg.consumers.gateway.port"), or def when
// it is absent or null. Any integral number a config file can hold is
// accepted; anything else is a [*ConfigError] naming the key.
func (c *Config) ExtraInt(key string, def int) (int, error) {
	v, ok := c.Extra[key]
	if !ok || v == nil {
		return def, nil
	}
	bad := func() (int, error) {
		return 0, &ConfigError{Key: key, Err: fmt.Errorf("%v: want an integer", v)}
	}
	switch v := v.(type) {
	case int:
		return v, nil
	case int64:
		if v < math.MinInt || v > math.MaxInt {
			return bad()
		}
		return int(v), nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return bad()
		}
		return int(v), nil
	case json.Number:
		n, err := strconv.Atoi(v.String())
		if err != nil {
			return bad()
		}
		return n, nil
	case string:
		n, err := strconv.Atoi(v)
		if err != nil {
			return bad()
		}
		return n, nil
	}
	return bad()
}

// ExtraString reads a string key of [Config.Extra], or "" when it is
// absent or null; a value of another kind is a [*ConfigError].
func (c *Config) ExtraString(key string) (string, error) {
	v, ok := c.Extra[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &ConfigError{Key: key, Err: fmt.Errorf("%v: want a string", v)}
	}
	return s, nil
}
