package amqpbridge

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// session is one connection to the broker and the one channel a bridge
// direction uses on it. A bridge makes a new session after each loss.
type session struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	connGone chan *amqp.Error
	chGone   chan *amqp.Error
}

// gone returns the error that ended the session, once it has ended.
func (s *session) gone() <-chan *amqp.Error {
	out := make(chan *amqp.Error, 1)
	go func() {
		select {
		case e := <-s.connGone:
			out <- e
		case e := <-s.chGone:
			out <- e
		}
	}()
	return out
}

func (s *session) close() {
	if s.ch != nil {
		s.ch.Close()
	}
	s.conn.Close()
}

// openSession dials the broker and opens a channel, then lets setup
// declare what the direction needs. It tries once; see [connect].
func openSession(cfg *Config, name string, setup func(*amqp.Channel) error) (*session, error) {
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": name, "product": "gilmsg-go amqpbridge"},
	})
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, connGone: conn.NotifyClose(make(chan *amqp.Error, 1))}
	if s.ch, err = conn.Channel(); err != nil {
		conn.Close()
		return nil, err
	}
	s.chGone = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := setup(s.ch); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// connect opens a session, trying again with backoff (100 ms doubling to
// cfg.ReconnectMax) until it succeeds or ctx ends. Setup errors the broker
// reports as permanent (an exchange of another type, access refused) are
// returned at once: retrying cannot fix them.
func connect(ctx context.Context, cfg *Config, name string, log *slog.Logger, setup func(*amqp.Channel) error) (*session, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := openSession(cfg, name, setup)
		if err == nil {
			if attempt > 1 {
				log.Info("amqpbridge: connected to the broker", slog.String("url", RedactURL(cfg.URL)), slog.Int("attempts", attempt))
			}
			return s, nil
		}
		if ae, ok := err.(*amqp.Error); ok && !ae.Recover && isPermanent(ae.Code) {
			return nil, fmt.Errorf("amqpbridge: %s: %w", RedactURL(cfg.URL), err)
		}
		log.Warn("amqpbridge: broker not reachable, retrying", slog.String("url", RedactURL(cfg.URL)),
			slog.Duration("in", backoff), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cfg.ReconnectMax)
	}
}

// isPermanent reports AMQP reply codes that a retry cannot fix.
func isPermanent(code int) bool {
	switch code {
	case amqp.AccessRefused, amqp.NotAllowed, amqp.PreconditionFailed, amqp.NotFound, amqp.CommandInvalid:
		return true
	}
	return false
}
