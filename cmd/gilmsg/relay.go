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

// newRelayCmd builds the command afresh so that tests can get their own
// flags.
func newRelayCmd() *cobra.Command {
	var verbose bool
	var startMetrics metricsStart
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
			return runForwarder(cmd, verbose, startMetrics, func(cfg *gilmsg.Config, _ *slog.Logger, opts ...gilmsg.RelayOption) (forwarder, error) {
				r, err := gilmsg.NewRelay(cfg, opts...)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg relay: inbound %s, outbound %s\n", r.InboundEndpoint(), r.OutboundEndpoint())
				return r, nil
			})
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log the relay's start, stop and odd messages")
	startMetrics = addMetrics(cmd)
	return cmd
}

// forwarder is what relay, signing-relay and gateway run.
type forwarder interface {
	Run(ctx context.Context) error
	Close() error
	Stats() gilmsg.RelayStats
}

// runForwarder loads the configuration, opens a forwarder with a logger
// and the metrics hooks, and runs it until SIGINT or SIGTERM; then it
// closes it (queued messages get zmq_linger to leave) and prints its
// counts.
func runForwarder(cmd *cobra.Command, verbose bool, startMetrics metricsStart,
	open func(*gilmsg.Config, *slog.Logger, ...gilmsg.RelayOption) (forwarder, error)) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	// The forwarding loop is woken through its context, not by EINTR,
	// so zmq4's retry-after-EINTR can stay on.
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	stderr := cmd.ErrOrStderr()
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	hooks, stopMetrics, err := startMetrics(cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	f, err := open(cfg, log, gilmsg.WithRelayLogger(log), gilmsg.WithRelayHooks(hooks))
	if err != nil {
		return err
	}
	defer onSIGHUP(cmd.Name(), stderr, nil)()
	runErr := f.Run(ctx)
	closeErr := f.Close()
	st := f.Stats()
	fmt.Fprintf(stderr, "gilmsg %s: stopped; forwarded %d messages (%d not of two frames", cmd.Name(), st.Forwarded, st.NotTwoFrames)
	if st.Signed > 0 {
		fmt.Fprintf(stderr, ", %d signed", st.Signed)
	}
	fmt.Fprintln(stderr, ")")
	if runErr != nil && ctx.Err() == nil { // a signal is the normal way out
		return errors.Join(runErr, closeErr)
	}
	return closeErr
}
