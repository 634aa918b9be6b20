package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/gateway"
)

func newGatewayCmd() *cobra.Command {
	var verbose bool
	var bind string
	var startMetrics metricsStart
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Republish the whole bus on one port for clients outside it, like fedmsg-gateway",
		Long: `gateway subscribes to every endpoint of every name (except relay_inbound)
and republishes every message, byte for byte and unvalidated, on
tcp://*:<fedmsg.consumers.gateway.port> (default 9940), where plain
ZeroMQ SUB clients outside the bus connect. It does not carry anything
back into the bus.

Each client's queue holds at most fedmsg.consumers.gateway.high_water_mark
messages (default 1000); a client further behind loses messages rather
than growing the gateway's memory.

It runs until SIGINT or SIGTERM, then prints how many messages it
forwarded.`,
		Example: `  gilmsg gateway
  gilmsg gateway --bind tcp://127.0.0.1:9940 --metrics-addr :9941`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runForwarder(cmd, verbose, startMetrics, func(cfg *gilmsg.Config, log *slog.Logger, opts ...gilmsg.RelayOption) (forwarder, error) {
				g, err := gateway.New(cfg, gateway.WithLogger(log), gateway.WithRelayOptions(opts...), gateway.WithBind(bind))
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg gateway: from %d endpoints, publishing at %s\n", g.Sources(), g.Endpoint())
				return g, nil
			})
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log start, stop and odd messages")
	cmd.Flags().StringVar(&bind, "bind", "", "bind this `ADDRESS` instead of tcp://*:<fedmsg.consumers.gateway.port>")
	startMetrics = addMetrics(cmd)
	return cmd
}
