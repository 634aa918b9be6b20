package gilmsg

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// monitoringSocketKey is the config key (moksha's) of the address where a
// hub publishes its status, for fedmsg-check and package hubstatus.
const monitoringSocketKey = "moksha.monitoring.socket"

// DefaultStatusInterval is how often a hub publishes its status, as
// moksha's MonitoringProducer does.
const DefaultStatusInterval = 5 * time.Second

// hubStatusReport is what a hub publishes on moksha.monitoring.socket, in
// the JSON shape moksha's MonitoringProducer gives it and fedmsg-check
// reads. Package hubstatus has the reader's copy (hubstatus.Status), and
// its tests read what RunConsumers publishes.
type hubStatusReport struct {
	Consumers []consumerStatus `json:"consumers"`
	Producers []producerStatus `json:"producers"`
}

// consumerStatus is one consumer's part of a [hubStatusReport].
type consumerStatus struct {
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

// producerStatus is one producer's part of a [hubStatusReport]. A Go hub has one:
// the status publisher itself, named as moksha names its own.
type producerStatus struct {
	Name        string  `json:"name"`
	Module      string  `json:"module"`
	Initialized bool    `json:"initialized"`
	Exceptions  uint64  `json:"exceptions"`
	Frequency   float64 `json:"frequency"`
	LastRan     float64 `json:"last_ran"`
	Now         bool    `json:"now"`
}

// WithStatusInterval sets how often [Bus.RunConsumers] publishes the hub's
// status. Default [DefaultStatusInterval]. The status is published only
// when the config sets moksha.monitoring.socket.
func WithStatusInterval(d time.Duration) RunOption { return func(o *runOptions) { o.statusEvery = d } }

// timesKept is how many recent durations a consumer's status lists.
const timesKept = 10

// hubStatus counts, for each consumer of a runner, what moksha counts.
type hubStatus struct {
	mu        sync.Mutex
	consumers []consumerStatus
	producer  producerStatus
}

func newHubStatus(consumers []Consumer, every time.Duration) *hubStatus {
	st := &hubStatus{producer: producerStatus{Name: "MonitoringProducer", Module: "gilmsg", Initialized: true, Frequency: every.Seconds()}}
	for _, c := range consumers {
		st.consumers = append(st.consumers, consumerStatus{
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
	s := hubStatusReport{Consumers: make([]consumerStatus, len(st.consumers)), Producers: []producerStatus{st.producer}}
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
		return nil, &ConfigError{Key: monitoringSocketKey, Err: fmt.Errorf("%s: %w", endpoint, err)}
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
