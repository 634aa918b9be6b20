package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// newVerifyCmd builds the command afresh so that tests get their own flags.
func newVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Judge the signature of each message read from stdin",
		Long: `verify reads one message per line from stdin and prints one JSON line
per message:

  {"valid":true,"signer":"CN","error":"","reason":""}

A line is either a JSON object whose string field "body" holds the exact
frame-2 text (other fields are ignored, so the test vectors and the output
of "gilmsg tail --json"'s envelopes can be piped in), or else the body
itself. The message is judged as a subscriber would judge it under the
configuration: CA, CRL, accepted backends, gpg keys and routing policy.
signer is the certificate's CN when the message is valid (gpg: the key's
name in gpg_keys, else its fingerprint); error says why it is not,
and reason is its class (signature, expired, revoked, policy, ...).

Blank lines are skipped. An invalid message is a verdict, not a failure:
the exit status is 0 once every line has been judged. A line that could
not be judged because the CA or CRL could not be loaded (reason "ca"), or
gpg_home could not be read (reason "keyring"), is printed too, and makes
the exit status 1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return verifyLines(gilmsg.NewValidator(cfg), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}

// verdict is one output line of verify.
type verdict struct {
	Valid  bool   `json:"valid"`
	Signer string `json:"signer"`
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func verifyLines(v *gilmsg.Validator, in io.Reader, out io.Writer) error {
	// bufio.Reader rather than Scanner: a body with a long payload is
	// hundreds of kilobytes on one line.
	r := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	unjudged := 0
	for lineNo := 1; ; lineNo++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			w.Flush()
			return fmt.Errorf("reading stdin, line %d: %w", lineNo, readErr)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			vd := judge(v, bodyOf(line))
			if vd.Reason == string(gilmsg.ReasonCA) || vd.Reason == string(gilmsg.ReasonKeyring) {
				unjudged++
			}
			if err := enc.Encode(vd); err != nil {
				return err
			}
		}
		// Flushing when no more input is waiting keeps a pipeline fed
		// (tail | verify) without a write per line on a file.
		if r.Buffered() == 0 || readErr != nil {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if readErr != nil { // io.EOF
			break
		}
	}
	if unjudged > 0 {
		return fmt.Errorf("%d messages could not be judged: the CA or CRL could not be loaded", unjudged)
	}
	return nil
}

// bodyOf returns the frame-2 text a line carries: its "body" field when it
// is an object that has a string one, else the line itself.
func bodyOf(line []byte) []byte {
	if line[0] != '{' {
		return line
	}
	// gilmsg's decoder, not encoding/json, so that the body's bytes come
	// out as Python would write them (lone surrogates included).
	v, err := gilmsg.DecodeJSON(line)
	if err != nil {
		return line
	}
	obj, _ := v.(map[string]any)
	if body, ok := obj["body"].(string); ok {
		return []byte(body)
	}
	return line
}

func judge(v *gilmsg.Validator, body []byte) verdict {
	env, err := gilmsg.ParseEnvelope(body)
	if err == nil {
		var signer string
		if signer, err = v.Validate(env); err == nil {
			return verdict{Valid: true, Signer: signer}
		}
	}
	reason := gilmsg.ReasonOf(err)
	if reason == "" {
		reason = gilmsg.ReasonMalformed
	}
	return verdict{Error: err.Error(), Reason: string(reason)}
}
