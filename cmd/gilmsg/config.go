package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func init() { rootCmd.AddCommand(newConfigCmd()) }

// newConfigCmd builds the command afresh so that tests can get their own
// flags.
func newConfigCmd() *cobra.Command {
	var query string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the merged fedmsg configuration as JSON",
		Long: `config prints the configuration every other command would use, as
indented JSON with sorted keys, like Python's fedmsg-config: the defaults,
then the *.json, *.yaml, *.yml and *.toml files of /etc/fedmsg.d,
~/.fedmsg.d and ./fedmsg.d (fedmsg's *.py files cannot be read), then
--config, then FEDMSG_<KEY> environment variables.

The configuration is printed even when it is unusable, so that the culprit
can be seen in context; the command then fails, naming the problems.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("config takes no arguments, got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := readConfig(cmd)
			if err != nil {
				return err
			}
			m := cfg.AsMap()
			var out any = m
			if query != "" {
				v, ok := m[query]
				if !ok {
					return fmt.Errorf("no key %q in the configuration", query)
				}
				out = v
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false) // URLs and topics stay readable
			if err := enc.Encode(out); err != nil {
				return err
			}
			return cfg.Validate()
		},
	}
	cmd.Flags().StringVar(&query, "query", "", "print only the value of `KEY`")
	return cmd
}
