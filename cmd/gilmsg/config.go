package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

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

With --query KEY it prints one value as fedmsg-config --query does: a
string bare, a list one item a line, anything else as indented JSON. KEY
is a top-level key ("fedmsg.consumers.gateway.port" included) or a dotted
path into objects ("endpoints.relay_outbound", "logging.version"). A key
that is missing or null is an error (exit 1), as in fedmsg.

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
			out := cmd.OutOrStdout()
			if query != "" {
				v, err := queryConfig(cfg.AsMap(), query)
				if err != nil {
					return err
				}
				if err := printQueried(out, v); err != nil {
					return err
				}
			} else if err := printJSON(out, cfg.AsMap()); err != nil {
				return err
			}
			return cfg.Validate()
		},
	}
	cmd.Flags().StringVar(&query, "query", "", "print only the value of `KEY` (a top-level key or a dotted path such as endpoints.relay_outbound)")
	return cmd
}

// queryConfig finds key in m: as a top-level key first, since fedmsg has
// keys with dots in them, else as a path through nested objects, as
// fedmsg-config's dict_query does.
func queryConfig(m map[string]any, key string) (any, error) {
	v, ok := m[key]
	if !ok {
		var cur any = m
		for part := range strings.SplitSeq(key, ".") {
			obj, isObj := asObject(cur)
			if !isObj {
				cur = nil
				break
			}
			cur = obj[part]
		}
		v = cur
	}
	if v == nil {
		return nil, fmt.Errorf("no key %q in the configuration, or it is null", key)
	}
	return v, nil
}

// asObject returns v as a map when it is a JSON object of any Go type.
func asObject(v any) (map[string]any, bool) {
	switch v := v.(type) {
	case map[string]any:
		return v, true
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = e
		}
		return m, true
	case map[string][]string:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = e
		}
		return m, true
	}
	return nil, false
}

// printQueried prints a value as fedmsg-config --query does: a string
// bare, a list one item a line (a string item bare, any other as one line
// of JSON), anything else as indented JSON.
func printQueried(w io.Writer, v any) error {
	switch v := v.(type) {
	case string:
		_, err := fmt.Fprintln(w, v)
		return err
	case []string:
		for _, s := range v {
			if _, err := fmt.Fprintln(w, s); err != nil {
				return err
			}
		}
		return nil
	case []any:
		for _, e := range v {
			line, ok := e.(string)
			if !ok {
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				line = string(b)
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
		}
		return nil
	}
	return printJSON(w, v)
}

// printJSON prints v as indented JSON with sorted keys.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // URLs and topics stay readable
	return enc.Encode(v)
}
