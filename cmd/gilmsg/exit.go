package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// exitCodesHelp is the part of the root help that scripts rely on.
const exitCodesHelp = `Exit status, the same for every command:
  0  success (verify: every line was judged, valid or not)
  1  failure: bad configuration, no relay, I/O error, ...
  2  usage: unknown command, bad flag or argument
  3  a reliable publish was not ACKed by every recipient in time`

const rootLong = `gilmsg puts a shell on a fedmsg bus: publish (logger), tail, relay,
verify, and the tools around them. It reads fedmsg's configuration
(see "gilmsg config") and speaks fedmsg 1.1.7's wire format, plus
gilmsg's reliable ACKs.

` + exitCodesHelp

// rootArgs is the root's Args check. Without one, cobra rejects an unknown
// command with a plain error, which would exit 1; a runnable root with its
// own Args check makes it a usage error. The bare "gilmsg" still prints
// the help.
func rootArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &exitError{code: exitUsage, err: errors.New(msg)}
}

// exitCode maps what a command returned to the process's exit status, in
// one place: an [exitError] says it explicitly; a missing ACK is
// exitTimeout wherever it comes from; anything else is exitFailure.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, gilmsg.ErrAckTimeout):
		return exitTimeout
	default:
		return exitFailure
	}
}

// withExitCode wraps err in an [exitError] carrying [exitCode]'s answer,
// so that run, which only knows exitError, reports the right status.
func withExitCode(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitCode(err), err: err}
}

// usageErrorf is a usage error (exit 2) with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// noArgs is the Args check of commands that take none.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.Name(), args)
	}
	return nil
}
