package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

func init() { rootCmd.AddCommand(newRelayCmd()) }

// newRelayCmd builds the command afresh so that tests can get their own
// flags.
func newRelayCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Forward every message from relay_inbound to relay_outbound, like fedmsg-relay",
		Long: `relay binds a SUB socket at the first free address of relay_inbound, where
active publishers connect, and a PUB socket at the first free address of
endpoints["relay_outbound"], where subscribers connect, and forwards every
message between them byte for byte, so signatures stay valid.

It prints the bound endpoints to stderr and runs until SIGINT or SIGTERM,
then prints how many messages it forwarded.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("relay takes no arguments, got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			// The relay's loop is woken through its context, not by EINTR,
			// so zmq4's retry-after-EINTR can stay on.
			ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
			defer stop()

			stderr := cmd.ErrOrStderr()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			r, err := gilmsg.NewRelay(cfg, gilmsg.WithRelayLogger(log))
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "gilmsg relay: inbound %s, outbound %s\n", r.InboundEndpoint(), r.OutboundEndpoint())
			runErr := r.Run(ctx)
			closeErr := r.Close()
			st := r.Stats()
			fmt.Fprintf(stderr, "gilmsg relay: stopped; forwarded %d messages (%d not of two frames)\n", st.Forwarded, st.NotTwoFrames)
			if runErr != nil && ctx.Err() == nil { // a signal is the normal way out
				return errors.Join(runErr, closeErr)
			}
			return closeErr
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log the relay's start, stop and odd messages")
	return cmd
}
