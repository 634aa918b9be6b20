package replayserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/zsock"
)

// socketOptions are the fedmsg socket keys of cfg, as the root's buses
// apply them to their own sockets.
func socketOptions(cfg *gilmsg.Config) zsock.Options {
	return zsock.Options{
		MaxMsgSize:         cfg.MaxMessageBytes(),
		HWM:                cfg.HighWaterMark,
		LingerMS:           cfg.ZMQLinger,
		TCPKeepalive:       cfg.ZMQTCPKeepalive,
		KeepaliveCnt:       cfg.ZMQTCPKeepaliveCnt,
		KeepaliveIdle:      cfg.ZMQTCPKeepaliveIdle,
		KeepaliveIntvl:     cfg.ZMQTCPKeepaliveIntvl,
		ReconnectIvlMS:     cfg.ZMQReconnectIvl,
		ReconnectIvlMaxMS:  cfg.ZMQReconnectIvlMax,
		HeartbeatIvlMS:     cfg.ZMQHeartbeatIvl,
		HeartbeatTimeoutMS: cfg.ZMQHeartbeatTimeout,
		HeartbeatTTLMS:     cfg.ZMQHeartbeatTTL,
	}
}

// asConfigError makes an option zmq refused a *gilmsg.ConfigError naming
// its fedmsg key, as the root reports its own sockets' options.
func asConfigError(err error) error {
	var oe *zsock.OptionError
	if errors.As(err, &oe) {
		return &gilmsg.ConfigError{Key: oe.Key, Err: oe.Err}
	}
	return err
}

// toInt64 accepts integers, and floats with an integral value, of what
// gilmsg.DecodeJSON returns.
func toInt64(v any) (int64, error) {
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
		return 0, fmt.Errorf("%s", jsonKind(v))
	}
}

// jsonKind names the JSON type of what gilmsg.DecodeJSON returns, for
// refusals.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
