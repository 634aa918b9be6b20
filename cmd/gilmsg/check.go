package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/hubstatus"
)

func newCheckCmd() *cobra.Command {
	var consumers, producers []string
	var timeout float64
	cmd := &cobra.Command{
		Use:   "check [-c CONSUMER]... [-p PRODUCER]...",
		Short: "Check that a hub's consumers and producers are active (fedmsg-check)",
		Long: `check reads one status report from the hub at moksha.monitoring.socket
(a Go hub running consumers with gilmsg's RunConsumers, or a Python
fedmsg-hub) and checks that each named consumer and producer is active
and initialized, saying which are not, with fedmsg-check's messages.
With none named, it shows them all. The report follows, as indented JSON.

Exit status: 0 when all named are active; 1 when one is missing or not
initialized, when no report comes within --timeout, or when
moksha.monitoring.socket is not set.`,
		Example: `  gilmsg check -c MyConsumer -p MonitoringProducer --timeout 15`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd, consumers, producers, timeout)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&consumers, "consumer", "c", nil, "the `NAME` of a consumer that must be active (repeatable)")
	f.StringArrayVarP(&producers, "producer", "p", nil, "the `NAME` of a producer that must be active (repeatable)")
	f.Float64Var(&timeout, "timeout", 10, "how many `SECONDS` to wait for a report from the hub")
	return cmd
}

// checkFailed prints msg as fedmsg-check (click) prints its errors, and
// exits 1.
func checkFailed(cmd *cobra.Command, msg string) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", msg)
	return &exitError{code: exitFailure, err: errors.New("")}
}

func runCheck(cmd *cobra.Command, consumers, producers []string, timeout float64) error {
	if !(timeout > 0) || timeout > 1e6 || math.IsNaN(timeout) {
		return usageErrorf("--timeout %v: want a positive number of seconds", timeout)
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	endpoint, err := cfg.ExtraString(hubstatus.SocketKey)
	if err != nil {
		return err
	}
	if endpoint == "" {
		return checkFailed(cmd, `No monitoring endpoint has been configured: please set "moksha.monitoring.socket"`)
	}
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, time.Duration(timeout*float64(time.Second)))
	defer cancel()
	status, raw, err := hubstatus.Read(ctx, endpoint)
	if errors.Is(err, context.DeadlineExceeded) {
		return checkFailed(cmd, fmt.Sprintf("Failed to receive message from the monitoring endpoint (%s) in %v seconds.", endpoint, timeout))
	}
	if err != nil {
		return err
	}
	out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if len(consumers) == 0 && len(producers) == 0 {
		fmt.Fprintln(out, "No consumers or producers specified so all will be shown.")
	} else {
		active := map[string]map[string]bool{"consumers": {}, "producers": {}} // name → initialized
		for _, c := range status.Consumers {
			active["consumers"][c.Name] = c.Initialized
		}
		for _, p := range status.Producers {
			active["producers"][p.Name] = p.Initialized
		}
		missing, uninitialized := false, false
		for _, kind := range []struct {
			key   string
			names []string
		}{{"consumers", consumers}, {"producers", producers}} {
			for _, name := range kind.names {
				initialized, ok := active[kind.key][name]
				switch {
				case !ok:
					fmt.Fprintf(stderr, "\"%s\" is not active!\n", name)
					missing = true
				case !initialized:
					fmt.Fprintf(stderr, "\"%s\" is not initialized!\n", name)
					uninitialized = true
				}
			}
		}
		switch {
		case missing:
			return checkFailed(cmd, "Some consumers and/or producers are missing!")
		case uninitialized:
			return checkFailed(cmd, "Some consumers and/or producers are uninitialized!")
		}
		fmt.Fprintln(out, "All consumers and producers are active!")
	}
	// The report as fedmsg-check prints it: json.dumps(indent=2, sort_keys=True).
	v, err := gilmsg.DecodeJSON(raw)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := (&prettyPrinter{indent: "  ", ascii: true}).value(&b, v, 0); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err = out.Write(b.Bytes())
	return err
}
