package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/trigger"
)

type triggerOptions struct {
	command      string
	topic        string
	include      string
	exclude      string
	waitFor      float64
	maxQueueSize int
	metrics      metricsStart
}

func newTriggerCmd() *cobra.Command {
	var o triggerOptions
	cmd := &cobra.Command{
		Use:   "trigger --command CMD",
		Short: "Run a command for each message that matches (fedmsg-trigger)",
		Long: `trigger subscribes like tail and runs CMD with the shell (bash, as
fedmsg-trigger does) for each message whose full topic starts with
--topic, matches --include and does not match --exclude (regular
expressions searched anywhere in the topic). The command reads the
message's envelope, in fedmsg's canonical JSON, and a newline on stdin;
the message never becomes part of the command line (fedmsg-trigger's
echo '<json>' | CMD breaks on a single quote, and lets a message run
commands).

With --wait-for S, commands run once no message has matched for S seconds
(each match restarts the wait), or at once when more than
--max-queue-size messages wait. Commands run one at a time, in order. A
command that fails is logged with its exit status, and the next message
goes on.

trigger runs until SIGINT or SIGTERM; a running command then gets SIGTERM.`,
		Example: `  gilmsg trigger --topic org.fedoraproject.prod.bodhi --command 'jq -r .msg_id >> /var/tmp/ids'
  gilmsg trigger --include 'compose\.complete$' --wait-for 60 --command 'sync-mirror'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withExitCode(runTrigger(cmd, &o))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.command, "command", "", "the shell `COMMAND` to run for each message (required)")
	f.StringVar(&o.topic, "topic", "", "only topics starting with this full-topic `PREFIX` (the subscription)")
	f.StringVar(&o.include, "include", "", "only topics matching this regular expression")
	f.StringVar(&o.exclude, "exclude", "_heartbeat", "no topics matching this regular expression")
	f.Float64Var(&o.waitFor, "wait-for", 0, "run once no message has matched for `SECONDS`")
	f.IntVar(&o.maxQueueSize, "max-queue-size", 0, "run at once when more than `N` messages wait (0: no limit)")
	o.metrics = addMetrics(cmd)
	return cmd
}

func runTrigger(cmd *cobra.Command, o *triggerOptions) error {
	if o.command == "" {
		return usageErrorf("--command is required")
	}
	if o.waitFor < 0 || math.IsNaN(o.waitFor) || o.waitFor > 1e9 {
		return usageErrorf("--wait-for %v: want 0 or more seconds", o.waitFor)
	}
	if o.maxQueueSize < 0 {
		return usageErrorf("--max-queue-size %d: want 0 or more", o.maxQueueSize)
	}
	include, err := compileFilter("include", o.include)
	if err != nil {
		return err
	}
	exclude, err := compileFilter("exclude", o.exclude)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	// A listener: the config's name belongs to a service.
	cfg.Name, cfg.Active = "", false
	ctx, stop := notify(cmd.Context())
	defer stop()
	hooks, stopMetrics, err := o.metrics(cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	stderr := cmd.ErrOrStderr()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus, err := gilmsg.New(cfg, gilmsg.WithHooks(hooks), gilmsg.WithLogger(log))
	if err != nil {
		return err
	}
	defer bus.Close()
	defer onSIGHUP("trigger", stderr, bus.Validator())()
	t := &trigger.Trigger{
		Include: include, Exclude: exclude,
		WaitFor:      time.Duration(o.waitFor * float64(time.Second)),
		MaxQueueSize: o.maxQueueSize,
		Action:       trigger.ShellCommand(o.command, cmd.OutOrStdout(), stderr),
		Logger:       log,
	}
	sub, err := bus.Subscribe(ctx, o.topic, gilmsg.WithoutAck())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer sub.Close()
	fmt.Fprintf(stderr, "gilmsg trigger: running %q for each message\n", o.command)
	// Run ends only with ctx: a signal, the normal way out.
	if err := t.Run(ctx, sub.Messages(ctx)); !errors.Is(err, ctx.Err()) {
		return err
	}
	return nil
}
