// Command gilmsg puts a shell on a fedmsg bus: publish, tail, relay, verify,
// and the tools around them. Each subcommand lives in its own file, with a
// constructor that [newRootCmd] calls: every run builds its own command tree,
// so that nothing (flags, outputs, context) outlives it or is shared between
// runs, in tests that run many at once as in the process main starts.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every command.
const (
	exitOK      = 0
	exitFailure = 1 // any failure not listed below
	exitUsage   = 2 // bad flags or arguments
	exitTimeout = 3 // a reliable publish was not ACKed by every recipient
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it is the module version go install recorded, or "dev".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newRootCmd builds the whole command tree, its flags unset.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "gilmsg",
		Short:         "Publish, tail and relay on a fedmsg bus, with gilmsg's reliable ACKs",
		Long:          rootLong,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          rootArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	addConfigFlag(root)
	root.AddCommand(
		newLoggerCmd(),
		newTailCmd(),
		newRelayCmd(),
		newSigningRelayCmd(),
		newGatewayCmd(),
		newVerifyCmd(),
		newCanonicalCmd(),
		newCheckCmd(),
		newConfigCmd(),
		newDevPKICmd(),
		newDemoCmd(),
		newAnnounceCmd(),
		newTriggerCmd(),
		newReplayServerCmd(),
		newDGReplayCmd(),
		newBridgeCmd(),
		newBenchCmd(),
	)
	return root
}

// exitError carries a specific exit code out of a command's RunE.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	return execute(newRootCmd(), args)
}

// execute runs root with args and returns the exit status; the caller may
// have set root's input, outputs and context beforehand.
func execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	// An exitError with an empty message has said what it had to already.
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(root.ErrOrStderr(), "gilmsg:", withoutLibraryPrefix(msg))
	}
	return exitCode(err)
}

// withoutLibraryPrefix drops the library's "gilmsg: " where it starts the
// message or a wrapped error inside it ("line 1: gilmsg: not connected"):
// the CLI says "gilmsg:" once, at the start of its line.
func withoutLibraryPrefix(msg string) string {
	return strings.ReplaceAll(strings.TrimPrefix(msg, "gilmsg: "), ": gilmsg: ", ": ")
}
