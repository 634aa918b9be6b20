package amqpbridge

import (
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// Config is the bridge's part of the configuration. Its keys sit in the
// fedmsg configuration files beside fedmsg's own (where [gilmsg.Config]
// keeps them in Extra); [FromConfig] reads them, and flags override them.
type Config struct {
	// URL is the broker, amqp://user:pass@host:port/vhost. Key amqp_url,
	// default "amqp://guest:guest@localhost:5672/".
	URL string
	// PublishExchange is the durable topic exchange zmq-to-amqp declares
	// and publishes to. Key amqp_publish_exchange, default "zmq.topic".
	PublishExchange string
	// ConsumeExchange is the exchange amqp-to-zmq consumes from. Key
	// amqp_consume_exchange, default "amq.topic" (fedora-messaging's).
	ConsumeExchange string
	// Queue is amqp-to-zmq's durable queue. Key amqp_queue, default
	// "gilmsg-bridge.<name>".
	Queue string
	// Bindings are the routing keys Queue is bound with. Key
	// amqp_bindings, default ["#"] (everything).
	Bindings []string
	// Recipients, when set, makes amqp-to-zmq publish reliably: a delivery
	// is acked only once these CNs have ACKed it on the bus. Key
	// amqp_recipients, default none.
	Recipients []string
	// Window caps the unconfirmed publishes (zmq-to-amqp) and the
	// unacknowledged deliveries (amqp-to-zmq, as the prefetch count, a
	// 16-bit field: at most 65535). Key amqp_window, default 256.
	Window int
	// Workers is how many deliveries amqp-to-zmq publishes at once with
	// Recipients, each waiting for their ACKs; more than 1 does not keep
	// the broker's order. Without Recipients the deliveries in hand are
	// signed on every core and published in the broker's order, whatever
	// Workers says. Key amqp_workers, default 2.
	Workers int
	// MaxBody is the largest AMQP body carried either way, in bytes;
	// larger ones are dropped (zmq-to-amqp) or rejected (amqp-to-zmq). Key
	// amqp_max_body, default 1 MiB.
	MaxBody int
	// ReconnectMax caps the backoff between attempts to reach the broker
	// (from 100 ms, doubling). Key amqp_reconnect_max, default 5 (s).
	ReconnectMax time.Duration
}

// Defaults of [Config].
const (
	DefaultURL             = "amqp://guest:guest@localhost:5672/"
	DefaultPublishExchange = "zmq.topic"
	DefaultConsumeExchange = "amq.topic"
	DefaultWindow          = 256
	DefaultWorkers         = 2
	DefaultMaxBody         = 1 << 20
	DefaultReconnectMax    = 5 * time.Second
)

// maxWindow is AMQP's largest prefetch count (a 16-bit field).
const maxWindow = 65535

// DefaultConfig returns the defaults, with the queue named after the
// bridge's name.
func DefaultConfig(name string) Config {
	return Config{
		URL:             DefaultURL,
		PublishExchange: DefaultPublishExchange,
		ConsumeExchange: DefaultConsumeExchange,
		Queue:           "gilmsg-bridge." + name,
		Bindings:        []string{"#"},
		Window:          DefaultWindow,
		Workers:         DefaultWorkers,
		MaxBody:         DefaultMaxBody,
		ReconnectMax:    DefaultReconnectMax,
	}
}

// FromConfig returns [DefaultConfig] for cfg.Name overridden by the amqp_*
// keys of cfg. A key of the wrong type is a [gilmsg.ConfigError].
func FromConfig(cfg *gilmsg.Config) (Config, error) {
	c := DefaultConfig(cfg.Name)
	x := cfg.Extra
	var errs []error
	str := func(key string, dst *string) {
		if v, ok := x[key]; ok && v != nil {
			s, ok := v.(string)
			if !ok || s == "" {
				errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a non-empty string, got %v", v)})
				return
			}
			*dst = s
		}
	}
	list := func(key string, dst *[]string) {
		v, ok := x[key]
		if !ok || v == nil {
			return
		}
		switch l := v.(type) {
		case string: // "a,b" from FEDMSG_AMQP_RECIPIENTS
			*dst = splitList(l)
		case []any:
			out := []string{}
			for _, e := range l {
				s, ok := e.(string)
				if !ok {
					errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a list of strings, got an item %v", e)})
					return
				}
				out = append(out, s)
			}
			*dst = out
		default:
			errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a list of strings, got %v", v)})
		}
	}
	num := func(key string) (float64, bool) {
		v, ok := x[key]
		if !ok || v == nil {
			return 0, false
		}
		var f float64
		switch n := v.(type) {
		case int:
			f = float64(n)
		case int64:
			f = float64(n)
		case float64:
			f = n
		case string: // from an environment variable
			if _, err := fmt.Sscan(n, &f); err != nil {
				errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a number, got %q", n)})
				return 0, false
			}
		default:
			errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a number, got %v", v)})
			return 0, false
		}
		if f <= 0 {
			errs = append(errs, &gilmsg.ConfigError{Key: key, Err: fmt.Errorf("want a positive number, got %v", v)})
			return 0, false
		}
		return f, true
	}
	str("amqp_url", &c.URL)
	str("amqp_publish_exchange", &c.PublishExchange)
	str("amqp_consume_exchange", &c.ConsumeExchange)
	str("amqp_queue", &c.Queue)
	list("amqp_bindings", &c.Bindings)
	list("amqp_recipients", &c.Recipients)
	if f, ok := num("amqp_window"); ok {
		c.Window = int(f)
	}
	if f, ok := num("amqp_workers"); ok {
		c.Workers = int(f)
	}
	if f, ok := num("amqp_max_body"); ok {
		c.MaxBody = int(f)
	}
	if f, ok := num("amqp_reconnect_max"); ok {
		c.ReconnectMax = time.Duration(f * float64(time.Second))
	}
	if len(errs) > 0 {
		return c, joinErrs(errs)
	}
	return c, c.Validate()
}

// Validate checks what can be checked before dialing: the URL parses,
// numbers are positive, and the two exchanges differ (one exchange both
// ways would be a loop).
func (c *Config) Validate() error {
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return &gilmsg.ConfigError{Key: "amqp_url", Err: redactURLError(err, c.URL)}
	}
	switch {
	case c.PublishExchange == "":
		return &gilmsg.ConfigError{Key: "amqp_publish_exchange", Err: fmt.Errorf("empty")}
	case c.ConsumeExchange == "":
		return &gilmsg.ConfigError{Key: "amqp_consume_exchange", Err: fmt.Errorf("empty")}
	case c.PublishExchange == c.ConsumeExchange:
		return &gilmsg.ConfigError{Key: "amqp_consume_exchange", Err: fmt.Errorf("%w: %q is also the exchange zmq-to-amqp publishes to", ErrLoop, c.ConsumeExchange)}
	case c.Queue == "":
		return &gilmsg.ConfigError{Key: "amqp_queue", Err: fmt.Errorf("empty")}
	case c.Window <= 0 || c.Workers <= 0 || c.MaxBody <= 0 || c.ReconnectMax <= 0:
		return &gilmsg.ConfigError{Key: "amqp_window", Err: fmt.Errorf("amqp_window, amqp_workers, amqp_max_body and amqp_reconnect_max must be positive")}
	case c.Window > maxWindow:
		// AMQP would cut the prefetch count to 16 bits (65536 is 0: no
		// limit), and amqp-to-zmq holds a window of deliveries.
		return &gilmsg.ConfigError{Key: "amqp_window", Err: fmt.Errorf("%d is over AMQP's largest prefetch count, %d", c.Window, maxWindow)}
	}
	return nil
}

// redactURLError keeps a password out of error messages, even those of a
// URL that does not parse.
func redactURLError(err error, url string) error {
	msg := err.Error()
	if pw := rawPassword(url); pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxx")
	}
	return errors.New(msg)
}

// rawPassword finds the password of scheme://user:password@host... by
// hand, for URLs the parsers refuse.
func rawPassword(url string) string {
	_, rest, ok := strings.Cut(url, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// RedactURL returns url with its password replaced, for logs.
func RedactURL(url string) string {
	u, err := amqp.ParseURI(url)
	if err != nil {
		if pw := rawPassword(url); pw != "" {
			return strings.ReplaceAll(url, pw, "xxx")
		}
		return url
	}
	if u.Password != "" {
		u.Password = "xxx"
	}
	return u.String()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func joinErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%w: %s", gilmsg.ErrConfig, strings.Join(msgs, "; "))
}
