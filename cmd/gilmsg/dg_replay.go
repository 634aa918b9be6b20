package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/datagrepper"
)

// contextT keeps the signatures of publishOnce's callers short.
type contextT = context.Context

func newDGReplayCmd() *cobra.Command {
	var msgID, dgURL string
	cmd := &cobra.Command{
		Use:   "dg-replay --msg-id ID [--datagrepper-url URL]",
		Short: "Publish again a message from datagrepper's history (fedmsg-dg-replay)",
		Long: `dg-replay fetches one message from datagrepper (GET <URL>/id?id=<ID>,
bounded to 30 seconds) and publishes its msg on this bus
through relay_inbound under a fresh envelope: this bus's topic prefix,
environment, msg_id, timestamp and signature; the original's modname (the
fourth part of its topic) and topic (the parts after it). The original's
credentials are not kept. A gilmsg ACK (a topic ending in .gilmsg.ack)
is refused: signed by this bus, it would be an ACK from this publisher.

On success it prints the new topic and msg_id.`,
		Example: `  gilmsg dg-replay --msg-id 2014-8909e1e9-2a46-4e53-9a0e-f5415a9bedcf`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if msgID == "" {
				return usageErrorf("--msg-id is required")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			cfg.Name, cfg.Active = "relay_inbound", true
			fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg dg-replay: retrieving %s from %s\n", msgID, dgURL)
			return withExitCode(publishOnce(cmd, cfg, "", func(ctx contextT, bus *gilmsg.Bus) (*gilmsg.Receipt, error) {
				return datagrepper.Republish(ctx, bus, http.DefaultClient, dgURL, msgID)
			}))
		},
	}
	cmd.Flags().StringVar(&msgID, "msg-id", "", "the msg_id of the message to publish again (required)")
	cmd.Flags().StringVar(&dgURL, "datagrepper-url", datagrepper.DefaultURL, "the datagrepper instance to ask")
	return cmd
}

// publishOnce joins the bus as cfg says, waits (up to the config's
// timeout) for a subscriber of topic ("" for any: an active publisher's
// relay), publishes with publish, and prints the receipt on stdout.
func publishOnce(cmd *cobra.Command, cfg *gilmsg.Config, topic string,
	publish func(contextT, *gilmsg.Bus) (*gilmsg.Receipt, error)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := notify(cmd.Context())
	defer stop()
	bus, err := gilmsg.New(cfg)
	if err != nil {
		return err
	}
	// Close waits up to zmq_linger for the message to leave.
	defer bus.Close()
	if err := waitSubscribers(ctx, bus, topic, 1, cfg.TimeoutDuration()); err != nil {
		return err
	}
	r, err := publish(ctx, bus)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", r.Topic, r.MsgID)
	return nil
}
