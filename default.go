package gilmsg

import (
	"context"
	"errors"
	"iter"
	"sync"
)

// The package-level API mirrors fedmsg's module functions (fedmsg.init,
// fedmsg.publish, fedmsg.tail_messages, fedmsg.destroy) over one default
// [Bus]. New code should prefer a Bus of its own.
var defaultBus struct {
	mu sync.Mutex
	b  *Bus
}

// Init creates the default bus. A nil cfg loads the configuration as
// fedmsg does ([LoadConfig]).
func Init(cfg *Config, opts ...Option) error {
	defaultBus.mu.Lock()
	defer defaultBus.mu.Unlock()
	if defaultBus.b != nil {
		return ErrAlreadyInitialized
	}
	if cfg == nil {
		var err error
		if cfg, err = LoadConfig(); err != nil {
			return err
		}
	}
	b, err := New(cfg, opts...)
	if err != nil {
		return err
	}
	defaultBus.b = b
	return nil
}

// Default returns the default bus, initializing it from the loaded
// configuration on first use, as fedmsg.publish does.
func Default() (*Bus, error) {
	defaultBus.mu.Lock()
	b := defaultBus.b
	defaultBus.mu.Unlock()
	if b != nil {
		return b, nil
	}
	if err := Init(nil); err != nil && !errors.Is(err, ErrAlreadyInitialized) {
		return nil, err
	}
	defaultBus.mu.Lock()
	defer defaultBus.mu.Unlock()
	return defaultBus.b, nil
}

// Publish is [Bus.Publish] on the default bus.
func Publish(ctx context.Context, topic string, msg any, opts ...PublishOption) (*Receipt, error) {
	b, err := Default()
	if err != nil {
		return nil, err
	}
	return b.Publish(ctx, topic, msg, opts...)
}

// TailMessages is [Bus.Tail] on the default bus.
func TailMessages(ctx context.Context, topicPrefix string, opts ...SubscribeOption) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		b, err := Default()
		if err != nil {
			yield(nil, err)
			return
		}
		b.Tail(ctx, topicPrefix, opts...)(yield)
	}
}

// Destroy closes the default bus; Init may then be called again.
func Destroy() error {
	defaultBus.mu.Lock()
	b := defaultBus.b
	defaultBus.b = nil
	defaultBus.mu.Unlock()
	if b == nil {
		return nil
	}
	return b.Close()
}
