package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/replayserver"
)

func newReplayServerCmd() *cobra.Command {
	var name string
	var startMetrics metricsStart
	cmd := &cobra.Command{
		Use:   "replay-server",
		Short: "Answer replay requests for one publisher from its persistent_store",
		Long: `replay-server serves the messages a publisher stored (persistent_store)
to subscribers that missed them, on replay_endpoints[NAME], as fedmsg's
ReplayContext does (WIRE.md §11): a REP socket bound on every interface
at that address's port; each request is one JSON object whose keys
seq_id, seq_ids, seq_id_range [a, b], msg_id, msg_ids and time [t0, t1]
are OR-ed; the reply is one frame per message, in seq_id order.

Unlike Python's, seq_id_range works, and every request gets an answer: a
request that is not JSON, not an object, has a key of the wrong type or
an unknown key, or asks for more than 10000 ids gets one frame
"error: '...'", as does a query that matches nothing. A reply holds at
most 1000 messages, the lowest seq_ids, and stops once it reaches 32 MiB;
ask again with "after_seq_id" set to the last one received for the next
page.

It runs until interrupted (SIGINT, SIGTERM); requests are logged to
stderr when refused.`,
		Example: `  gilmsg replay-server --name bodhi.app01`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := readConfig(cmd)
			if err != nil {
				return err
			}
			if name == "" {
				name = cfg.Name
			}
			if name == "" {
				return usageErrorf("--name is needed (the configuration has no name)")
			}
			if cfg.PersistentStore == nil {
				return &gilmsg.ConfigError{Key: "persistent_store", Err: errors.New("not set: there is nothing to replay")}
			}
			ctx, stop := notify(cmd.Context())
			defer stop()
			st, closeStore, err := openStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeStore()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			srv, err := replayserver.New(cfg, name, st, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			hooks, stopMetrics, err := startMetrics(cfg)
			if err != nil {
				return err
			}
			defer stopMetrics()
			srv.SetHooks(hooks)
			defer onSIGHUP("replay-server", cmd.ErrOrStderr(), nil)()
			fmt.Fprintf(cmd.ErrOrStderr(), "gilmsg replay-server: serving %q from %s on %s\n", name, cfg.StoreURL(), srv.Endpoint())
			if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "serve replay_endpoints[`NAME`] (default: the configuration's name)")
	startMetrics = addMetrics(cmd)
	return cmd
}
