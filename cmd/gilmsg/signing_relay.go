package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/announce"
)

func newSigningRelayCmd() *cobra.Command {
	var verbose bool
	var startMetrics metricsStart
	cmd := &cobra.Command{
		Use:   "signing-relay",
		Short: "A relay that signs what comes unsigned, like fedmsg-signing-relay",
		Long: `signing-relay is relay (same sockets, same config keys) that signs each
unsigned message it forwards with the certificate of
certnames["signing_relay"], so that publishers that cannot sign still
reach subscribers that validate. Point those publishers (active, sign_messages
false) at its relay_inbound.

A message that is already signed is forwarded byte for byte: Python's
fedmsg-signing-relay signs over the existing signature and breaks it.
So is anything that is not a two-frame fedmsg message.

It runs until SIGINT or SIGTERM, then prints how many messages it
forwarded and signed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runForwarder(cmd, verbose, startMetrics, func(cfg *gilmsg.Config, _ *slog.Logger, opts ...gilmsg.RelayOption) (forwarder, error) {
				r, err := announce.NewSigningRelay(cfg, opts...)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg signing-relay: inbound %s, outbound %s, signing as %s\n",
					r.InboundEndpoint(), r.OutboundEndpoint(), cfg.Certnames[announce.SigningRelayName])
				return r, nil
			})
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log start, stop and odd messages")
	startMetrics = addMetrics(cmd)
	return cmd
}
