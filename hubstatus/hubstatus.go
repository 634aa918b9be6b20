package hubstatus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/zsock"

	zmq "github.com/pebbe/zmq4"
)

// SocketKey is the config key (moksha's) of the address where a hub
// publishes its status: [gilmsg.Bus.RunConsumers] publishes there when
// the config sets it, and fedmsg-check and [Read] read it.
const SocketKey = "moksha.monitoring.socket"

// DefaultTimeout bounds a [Read] whose ctx has no deadline.
const DefaultTimeout = 10 * time.Second

// Status is what a hub publishes on moksha.monitoring.socket, in the
// JSON shape moksha's MonitoringProducer gives it and fedmsg-check reads.
type Status struct {
	Consumers []Consumer `json:"consumers"`
	Producers []Producer `json:"producers"`
}

// Consumer is one consumer's part of a [Status].
type Consumer struct {
	Name         string    `json:"name"`   // Name() if the consumer has it, else its type's name
	Module       string    `json:"module"` // its type's package
	Topic        []string  `json:"topic"`
	Initialized  bool      `json:"initialized"`
	Exceptions   uint64    `json:"exceptions"` // Consume calls that returned an error
	JSONify      bool      `json:"jsonify"`
	Backlog      uint64    `json:"backlog"`       // messages given to it and not yet consumed
	HeadcountIn  uint64    `json:"headcount_in"`  // messages given to it
	HeadcountOut uint64    `json:"headcount_out"` // messages it has finished with
	Times        []float64 `json:"times"`         // recent Consume durations, in seconds
}

// Producer is one producer's part of a [Status]. A Go hub has one: the
// status publisher itself, named as moksha names its own.
type Producer struct {
	Name        string  `json:"name"`
	Module      string  `json:"module"`
	Initialized bool    `json:"initialized"`
	Exceptions  uint64  `json:"exceptions"`
	Frequency   float64 `json:"frequency"`
	LastRan     float64 `json:"last_ran"`
	Now         bool    `json:"now"`
}

// Read connects to a hub's monitoring endpoint and returns the first
// status it publishes, decoded and as received, as fedmsg-check does, or
// an error when none comes before ctx ends ([DefaultTimeout] when ctx has
// no deadline). A status that is not of this shape is an error matching
// [gilmsg.ErrInvalidMessage], returned with the raw text.
func Read(ctx context.Context, endpoint string) (*Status, json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	zctx, err := zsock.NewContext(1)
	if err != nil {
		return nil, nil, err
	}
	defer zctx.Term()
	sock, err := newSub(zctx)
	if err != nil {
		return nil, nil, err
	}
	defer sock.Close()
	if err := sock.Connect(endpoint); err != nil {
		return nil, nil, &gilmsg.ConfigError{Key: SocketKey, Err: fmt.Errorf("%s: %w", endpoint, err)}
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		// Short polls, so that ctx is seen without a waker.
		polled, err := poller.Poll(50 * time.Millisecond)
		if err != nil {
			return nil, nil, fmt.Errorf("hub status: %w", err)
		}
		if len(polled) > 0 {
			frames, err := sock.RecvMessageBytes(0)
			if err != nil {
				return nil, nil, fmt.Errorf("hub status: %w", err)
			}
			raw := json.RawMessage(bytes.Join(frames, nil))
			var st Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, raw, fmt.Errorf("%w: hub status: %w", gilmsg.ErrInvalidMessage, err)
			}
			return &st, raw, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
	}
}

// newSub makes Read's socket: a SUB to everything with the bus's defaults,
// whose receive queue is so bounded as every SUB's is ([zsock.New]): what
// a hub sends before Read takes the first would otherwise queue without
// limit. A SUB sends nothing but its subscription, so no linger
// (zsock.SendLingerMS).
func newSub(zctx *zmq.Context) (*zmq.Socket, error) {
	o := zsock.FromConfig(gilmsg.DefaultConfig())
	o.LingerMS = 0
	sock, err := zsock.New(zctx, zmq.SUB, o)
	if err != nil {
		return nil, err
	}
	if err := sock.SetSubscribe(""); err != nil {
		sock.Close()
		return nil, err
	}
	return sock, nil
}
