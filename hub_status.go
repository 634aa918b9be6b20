package gilmsg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// MonitoringSocketKey is the config key (moksha's) of the address where a
// hub publishes its status, for fedmsg-check and [ReadHubStatus].
const MonitoringSocketKey = "moksha.monitoring.socket"

// DefaultStatusInterval is how often a hub publishes its status, as
// moksha's MonitoringProducer does.
const DefaultStatusInterval = 5 * time.Second

// HubStatus is what a hub publishes on moksha.monitoring.socket, in the
// JSON shape moksha's MonitoringProducer gives it and fedmsg-check reads.
type HubStatus struct {
	Consumers []ConsumerStatus `json:"consumers"`
	Producers []ProducerStatus `json:"producers"`
}

// ConsumerStatus is one consumer's part of a [HubStatus].
type ConsumerStatus struct {
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

// ProducerStatus is one producer's part of a [HubStatus]. A Go hub has one:
// the status publisher itself, named as moksha names its own.
type ProducerStatus struct {
	Name        string  `json:"name"`
	Module      string  `json:"module"`
	Initialized bool    `json:"initialized"`
	Exceptions  uint64  `json:"exceptions"`
	Frequency   float64 `json:"frequency"`
	LastRan     float64 `json:"last_ran"`
	Now         bool    `json:"now"`
}

// StatusInterval sets how often [Bus.RunConsumers] publishes the hub's
// status. Default [DefaultStatusInterval]. The status is published only
// when the config sets moksha.monitoring.socket.
func StatusInterval(d time.Duration) RunOption { return func(o *runOptions) { o.statusEvery = d } }

// timesKept is how many recent durations a consumer's status lists.
const timesKept = 10

// hubStatus counts, for each consumer of a runner, what moksha counts.
type hubStatus struct {
	mu        sync.Mutex
	consumers []ConsumerStatus
	producer  ProducerStatus
}

func newHubStatus(consumers []Consumer, every time.Duration) *hubStatus {
	st := &hubStatus{producer: ProducerStatus{Name: "MonitoringProducer", Module: "gilmsg", Initialized: true, Frequency: every.Seconds()}}
	for _, c := range consumers {
		st.consumers = append(st.consumers, ConsumerStatus{
			Name: consumerName(c), Module: consumerModule(c), Topic: []string{c.Topic()},
			Initialized: true, JSONify: true, Times: []float64{},
		})
	}
	return st
}

// consumerName is c's Name(), if it has one, else its type's name.
func consumerName(c Consumer) string {
	if n, ok := c.(interface{ Name() string }); ok {
		return n.Name()
	}
	if _, ok := c.(funcConsumer); ok {
		return "ConsumerFunc"
	}
	t := reflect.TypeOf(c)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

func consumerModule(c Consumer) string {
	t := reflect.TypeOf(c)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath()
}

// started and finished bracket consumer i's Consume; nil-safe.
func (st *hubStatus) started(i int) {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.consumers[i].HeadcountIn++
	st.consumers[i].Backlog++
	st.mu.Unlock()
}

func (st *hubStatus) finished(i int, took time.Duration, err error) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c := &st.consumers[i]
	c.HeadcountOut++
	c.Backlog--
	if err != nil {
		c.Exceptions++
	}
	c.Times = append(c.Times, took.Seconds())
	if len(c.Times) > timesKept {
		c.Times = append(c.Times[:0], c.Times[len(c.Times)-timesKept:]...)
	}
}

func (st *hubStatus) marshal(now time.Time) ([]byte, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.producer.LastRan = float64(now.UnixMicro()) / 1e6
	s := HubStatus{Consumers: make([]ConsumerStatus, len(st.consumers)), Producers: []ProducerStatus{st.producer}}
	for i, c := range st.consumers {
		c.Times = append([]float64{}, c.Times...)
		s.Consumers[i] = c
	}
	return json.Marshal(s)
}

// startStatus binds a PUB socket at endpoint and, from a goroutine that
// then owns it, sends the status there now and every interval, until stop.
func (b *Bus) startStatus(st *hubStatus, endpoint string, every time.Duration) (stop func(), err error) {
	so := b.sockOpts()
	so.LingerMS = 0 // a status nobody read is worth nothing
	sock, err := newSocket(b.zctx, zmq.PUB, so)
	if err != nil {
		return nil, err
	}
	if err := sock.Bind(endpoint); err != nil {
		sock.Close()
		return nil, &ConfigError{Key: MonitoringSocketKey, Err: fmt.Errorf("%s: %w", endpoint, err)}
	}
	b.log.Info("gilmsg: publishing the hub's status", slog.String("endpoint", endpoint), slog.Duration("every", every))
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer sock.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if body, err := st.marshal(time.Now()); err != nil {
				b.log.Error("gilmsg: hub status", slog.Any("error", err))
			} else if _, err := sock.SendBytes(body, zmq.DONTWAIT); err != nil && !isEAGAIN(err) {
				// A PUB never blocks: without a subscriber it drops.
				b.log.Warn("gilmsg: hub status", slog.Any("error", err))
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(quit); <-done }, nil
}

// ReadHubStatus connects to a hub's monitoring endpoint and returns the
// first status it publishes, as fedmsg-check does, or an error when none
// comes before ctx ends (a default of 10s when ctx has no deadline).
func ReadHubStatus(ctx context.Context, endpoint string) (*HubStatus, json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	zctx, err := newContext(1)
	if err != nil {
		return nil, nil, err
	}
	defer zctx.Term()
	o := sockOptsFromConfig(DefaultConfig())
	o.LingerMS = 0
	o.MaxMsgSize = DefaultMaxMessageSize // a report is a few kB
	sock, err := newSocket(zctx, zmq.SUB, o)
	if err != nil {
		return nil, nil, err
	}
	defer sock.Close()
	if err := sock.SetSubscribe(""); err != nil {
		return nil, nil, err
	}
	if err := sock.Connect(endpoint); err != nil {
		return nil, nil, &ConfigError{Key: MonitoringSocketKey, Err: fmt.Errorf("%s: %w", endpoint, err)}
	}
	poller := zmq.NewPoller()
	poller.Add(sock, zmq.POLLIN)
	for {
		// Short polls, so that ctx is seen without a waker.
		polled, err := poller.Poll(50 * time.Millisecond)
		if err != nil {
			return nil, nil, fmt.Errorf("gilmsg: hub status: %w", err)
		}
		if len(polled) > 0 {
			frames, err := sock.RecvMessageBytes(0)
			if err != nil {
				return nil, nil, fmt.Errorf("gilmsg: hub status: %w", err)
			}
			raw := json.RawMessage(bytes.Join(frames, nil))
			var st HubStatus
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, raw, fmt.Errorf("%w: hub status: %w", ErrInvalidMessage, err)
			}
			return &st, raw, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
	}
}
