package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	zmq "github.com/pebbe/zmq4"
	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/amqpbridge"
)

// newBridgeCmd builds the command afresh so that tests get their own flags.
func newBridgeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bridge",
		Short: "Bridge the bus to AMQP (RabbitMQ, fedora-messaging) or back",
		Long: `bridge carries messages between the fedmsg bus and an AMQP 0-9-1 broker
such as RabbitMQ, in fedora-messaging's form, as Fedora's
fedmsg-migration-tools did while moving from fedmsg to fedora-messaging.
Run one process per direction; see "gilmsg bridge zmq-to-amqp --help" and
"gilmsg bridge amqp-to-zmq --help". Both may run under one name (one
certificate): give that name an address per process in endpoints, since
each binds the first one free, as fedmsg does.

Beside the flags, the fedmsg configuration may hold the bridge's keys:
amqp_url, amqp_publish_exchange, amqp_consume_exchange, amqp_queue,
amqp_bindings, amqp_recipients, amqp_window, amqp_workers, amqp_max_body
and amqp_reconnect_max (see the README). Flags win over keys.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBridgeDirectionCmd(true), newBridgeDirectionCmd(false))
	return cmd
}

type bridgeOptions struct {
	name       string
	url        string
	exchange   string
	queue      string
	recipients []string
	verbose    bool
	metrics    metricsStart
}

func newBridgeDirectionCmd(toAMQP bool) *cobra.Command {
	var o bridgeOptions
	cmd := &cobra.Command{Args: noArgs}
	if toAMQP {
		cmd.Use = "zmq-to-amqp"
		cmd.Short = "Publish every valid bus message on a broker exchange, ACKing reliable ones once the broker confirmed them"
		cmd.Long = `zmq-to-amqp subscribes to every endpoint of the bus, validates as any
subscriber does, and publishes each message in fedora-messaging form on a
durable topic exchange it declares (--exchange, default zmq.topic), with
publisher confirms: routing key = topic, body = the JSON of msg,
message_id = msg_id, persistent, with fedora-messaging's headers.

Messages without a JSON object msg, gilmsg ACKs, and messages from
amqp-to-zmq (username amqp-bridge) are not carried.

The bridge is a gilmsg recipient under the certificate of --name: it ACKs
a reliable message only once the broker has confirmed it. So
"gilmsg logger --recipients <its CN>" exits 0 only when the message is in
the broker, and 3 when the broker is down. While the broker is down the
bridge keeps what it could not publish (up to amqp_window messages),
reconnects with backoff and publishes it then.

It runs until SIGINT or SIGTERM, then prints its counters.`
		cmd.Example = `  gilmsg bridge zmq-to-amqp --name bridge01 --amqp-url amqp://user:pass@rabbit:5672/%2F
  gilmsg logger --name app01 --recipients bridge01 --message deployed`
	} else {
		cmd.Use = "amqp-to-zmq"
		cmd.Short = "Publish broker messages on the bus, signed by the bridge"
		cmd.Long = `amqp-to-zmq consumes from a durable queue (--queue, default
gilmsg-bridge.<name>) bound to an exchange (--exchange, default amq.topic,
fedora-messaging's) and publishes each message on the bus as a new
envelope signed with the certificate of --name: topic = routing key,
msg = the body, msg_id = the message_id ("<year>-" prefixed unless it
starts with one), username amqp-bridge.

A delivery is acked once published, or with --recipients once they have
all ACKed it; otherwise it is nacked and the broker delivers it again,
under the same msg_id, so subscribers drop the copy. The body is decoded
under its content_encoding as fedora-messaging decodes it (utf-8 when
absent; ascii, latin-1, cp1252, utf-16). A body that is not a JSON object,
larger than amqp_max_body, in another encoding, or without message_id is
logged with its reason and rejected without requeue (a dead-letter
exchange on the queue keeps it). A message that zmq-to-amqp published and
an exchange binding routed back is dropped too, logged only with -v.

It runs until SIGINT or SIGTERM, then prints its counters.`
		cmd.Example = `  gilmsg bridge amqp-to-zmq --name bridge01 --amqp-url amqp://user:pass@rabbit:5672/%2F
  gilmsg bridge amqp-to-zmq --name bridge01 --recipients billing01 --queue billing-feed`
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return withExitCode(runBridge(cmd, &o, toAMQP))
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "the bridge's `NAME` on the bus: a key of endpoints, and its certname (required)")
	f.StringVar(&o.url, "amqp-url", "", "the broker, amqp://user:pass@host:port/vhost (default: amqp_url, else "+amqpbridge.DefaultURL+")")
	if toAMQP {
		f.StringVar(&o.exchange, "exchange", "", "publish to this durable topic `EXCHANGE` (default: amqp_publish_exchange, else "+amqpbridge.DefaultPublishExchange+")")
	} else {
		f.StringVar(&o.exchange, "exchange", "", "consume what is published to this `EXCHANGE` (default: amqp_consume_exchange, else "+amqpbridge.DefaultConsumeExchange+")")
		f.StringVar(&o.queue, "queue", "", "the durable `QUEUE` to consume from (default: amqp_queue, else gilmsg-bridge.<name>)")
		f.StringSliceVar(&o.recipients, "recipients", nil, "ack a delivery only once each certificate `CN` has ACKed it on the bus (default: amqp_recipients)")
	}
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log connections and every message not carried")
	o.metrics = addMetrics(cmd)
	return cmd
}

// bridgeRunner is what both directions have in common.
type bridgeRunner interface {
	Run(context.Context) error
	Stats() amqpbridge.Stats
}

func runBridge(cmd *cobra.Command, o *bridgeOptions, toAMQP bool) error {
	if o.name == "" {
		return usageErrorf("--name is required: the bridge's name on the bus and its certname")
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	cfg.Name, cfg.Active = o.name, false
	if !toAMQP {
		cfg.SignMessages = true // everything it publishes carries its signature
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	bc, err := amqpbridge.FromConfig(cfg)
	if err != nil {
		return err
	}
	if o.url != "" {
		bc.URL = o.url
	}
	if o.exchange != "" {
		if toAMQP {
			bc.PublishExchange = o.exchange
		} else {
			bc.ConsumeExchange = o.exchange
		}
	}
	if o.queue != "" {
		bc.Queue = o.queue
	}
	if len(o.recipients) > 0 {
		bc.Recipients = o.recipients
	}
	if err := bc.Validate(); err != nil {
		return usageErrorf("%v", err)
	}

	stderr := cmd.ErrOrStderr()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	hooks, stopMetrics, err := o.metrics(cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	bus, err := gilmsg.New(cfg, gilmsg.WithLogger(log), gilmsg.WithHooks(hooks))
	if err != nil {
		return bindHint(err, cfg.Name)
	}
	defer bus.Close()

	var r bridgeRunner
	direction, exchange := "zmq-to-amqp", bc.PublishExchange
	if toAMQP {
		r, err = amqpbridge.NewZmqToAMQP(bus, bc, amqpbridge.WithLogger(log))
	} else {
		direction, exchange = "amqp-to-zmq", bc.ConsumeExchange+" (queue "+bc.Queue+")"
		r, err = amqpbridge.NewAMQPToZmq(bus, bc, amqpbridge.WithLogger(log))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "gilmsg bridge %s: bus endpoint %s, broker %s, exchange %s\n",
		direction, bus.Endpoint(), amqpbridge.RedactURL(bc.URL), exchange)
	ctx, stop := notify(cmd.Context())
	defer stop()
	defer onSIGHUP("bridge", stderr, bus.Validator())()
	runErr := r.Run(ctx)
	st := r.Stats()
	fmt.Fprintf(stderr, "gilmsg bridge %s: stopped; received %d, forwarded %d, dropped %s, reconnects %d\n",
		direction, st.Received, st.Forwarded, formatDrops(st.Dropped), st.Reconnects)
	return runErr
}

// bindHint says what to do when every address of the bridge's name is
// taken: most often by the other direction, run under the same name.
func bindHint(err error, name string) error {
	var ne *gilmsg.NoEndpointError
	if !errors.As(err, &ne) || len(ne.Errs) == 0 {
		return err
	}
	for _, e := range ne.Errs {
		if !errors.Is(e, zmq.EADDRINUSE) {
			return err
		}
	}
	return fmt.Errorf("each bridge process binds an address of its own: list one per direction under endpoints[%q]: %w", name, err)
}

func formatDrops(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%d (%s)", v, strings.TrimPrefix(k, "amqpbridge: ")))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
