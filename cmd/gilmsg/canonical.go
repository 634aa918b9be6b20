package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// errReported ends a command whose failure is already on stderr, so run
// adds nothing (it skips errors with an empty message).
var errReported = errors.New("")

func newCanonicalCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "canonical",
		Short: "Print the canonical JSON of each line of stdin, as fedmsg signs it",
		Long: `canonical reads one JSON text per line from stdin and prints, one per
line, the text a fedmsg signature covers: what Python writes for
json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")).
Blank lines are skipped. At the first line that is not JSON it reports
"line N: <error>" on stderr and exits with status 1.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("canonical takes no arguments, got %q", args)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return canonicalLines(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

func canonicalLines(in io.Reader, out, errOut io.Writer) error {
	// bufio.Reader rather than Scanner: a message has no line length limit.
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriter(out)
	var buf []byte
	for n := 1; ; n++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && readErr != io.EOF {
			w.Flush()
			return fmt.Errorf("reading stdin: %w", readErr)
		}
		if len(bytes.Trim(line, " \t\r\n")) > 0 {
			v, err := gilmsg.DecodeJSON(line)
			if err == nil {
				buf, err = gilmsg.AppendCanonical(buf[:0], v)
			}
			if err != nil {
				if ferr := w.Flush(); ferr != nil {
					return ferr
				}
				fmt.Fprintf(errOut, "line %d: %v\n", n, err)
				return &exitError{code: exitFailure, err: errReported}
			}
			w.Write(append(buf, '\n'))
		}
		if readErr == io.EOF {
			return w.Flush()
		}
	}
}
