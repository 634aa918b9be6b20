package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

type tailOptions struct {
	topic        string
	json         bool
	count        int
	noValidate   bool
	include      string
	exclude      string
	reallyPretty bool
	query        string
	terse        bool
	name         string
	noAck        bool
	maxMsgSize   int64
	metrics      metricsStart
}

// newTailCmd builds the command afresh so that tests get their own flags.
func newTailCmd() *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the messages on the bus as they arrive (fedmsg-tail)",
		Long: `tail subscribes to every endpoint of every name in the configuration
(except relay_inbound) and prints each message whose full topic starts
with --topic: one line per message (time, topic, signer, payload), or
with --json one JSON object per line:

  {"name":..,"endpoint":..,"topic":..,"signer":..,"msg":{the envelope}}

or with --really-pretty what fedmsg-tail --really-pretty prints: the
message without its signature and certificate, indented, keys sorted
(the order every fedmsg publisher sends), text ASCII-escaped as fedmsg
writes it, coloured when stdout is a terminal.

Messages that fail validation are not printed; a line on stderr says
why. --include and --exclude filter on the topic with regular expressions
(matched anywhere in it).

ACKs: tail ACKs gilmsg's reliable messages, so that a reliable publish
naming it as a recipient succeeds, when it can publish: with --name it
binds that name's endpoint, and with "active" set in the configuration
it goes through relay_inbound. Otherwise, or with --no-ack, it only
listens. The configuration's own "name" is not used: it belongs to a
service that may be running. A message is ACKed only once its line has
been written to stdout: one that --include or --exclude drops, one that
fails validation, and one whose line could not be written are never
ACKed, so their publisher learns that they did not arrive. The ACKs
are signed on every core, while tail reads on; those not yet sent when
tail ends get up to 2 s to leave. The first ACK that could not be sent
is reported on stderr.

Replay: for each name with a replay_endpoints address, tail keeps the
last seq_id it printed, drops copies of what it printed, and asks that
address for the seq_ids it missed, printing them in order before the
message that showed the gap; what it cannot get is a line on stderr
("missed messages A..B of NAME"), and tail goes on asking, with backoff,
until they come or replay_gap_max_age (1 hour) has passed ("... (given
up)"). With status_directory set, it keeps in <status_directory>/<--name,
or "gilmsg-tail"> what it printed (rewritten after each line is written,
so a line that could not be written is printed again by the next run)
and what it still misses and, when it starts, first prints what it
missed while it was not running.

tail runs until interrupted (SIGINT, SIGTERM; a second one ends it at
once, even while stdout is blocked), until stdout is closed
(its reader, such as "head -1", has gone) or, with --count, until it
has printed that many messages; in each case the exit status is 0.
Another error writing stdout exits 1.`,
		Example: `  gilmsg tail --topic org.fedoraproject.prod.bodhi --json
  gilmsg tail --exclude 'gilmsg\.ack$' --really-pretty
  gilmsg tail --name consumer01 --count 1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withExitCode(runTail(cmd, &o))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "print only topics starting with this full-topic `PREFIX` (the subscription)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per message")
	f.IntVar(&o.count, "count", 0, "exit after `N` messages (0: never)")
	f.BoolVar(&o.noValidate, "no-validate", false, "print messages without checking their signatures")
	f.StringVar(&o.include, "include", "", "print only topics matching this regular expression")
	f.StringVar(&o.exclude, "exclude", "", "do not print topics matching this regular expression")
	f.StringVar(&o.query, "query", "", "print only these comma-separated dotted `PATHS` of each message (msg.update.title), as fedmsg-tail --query")
	f.BoolVar(&o.terse, "terse", false, "print one short line per message (<topic past prefix and environment> --), as fedmsg-tail --terse")
	f.BoolVar(&o.reallyPretty, "really-pretty", false, "print the message as fedmsg-tail --really-pretty does: indented, without signature and certificate")
	f.StringVar(&o.name, "name", "", "bind this `NAME`'s endpoint to send ACKs from")
	f.BoolVar(&o.noAck, "no-ack", false, "never ACK")
	f.Int64Var(&o.maxMsgSize, "max-message-size", gilmsg.DefaultMaxMessageSize, "drop the connection of a peer that sends a message over `BYTES` (-1: no limit)")
	o.metrics = addMetrics(cmd)
	return cmd
}

func runTail(cmd *cobra.Command, o *tailOptions) error {
	if o.count < 0 {
		return usageErrorf("--count %d: want 0 or more", o.count)
	}
	if o.maxMsgSize == 0 || o.maxMsgSize < -1 {
		return usageErrorf("--max-message-size %d: want a number of bytes, or -1 for no limit", o.maxMsgSize)
	}
	include, err := compileFilter("include", o.include)
	if err != nil {
		return err
	}
	exclude, err := compileFilter("exclude", o.exclude)
	if err != nil {
		return err
	}
	cfg, acking, err := o.config(cmd)
	if err != nil {
		return err
	}
	ctx, stop := notify(cmd.Context())
	defer stop()
	// The first signal ends the loop; a second one ends the process at
	// once, even while a write to a stopped reader holds tail (that line's
	// message is then not ACKed).
	context.AfterFunc(ctx, stop)
	// A write to a closed pipe must come back as EPIPE, which ends tail
	// with 0, instead of killing it with SIGPIPE (status 141).
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	hooks, stopMetrics, err := o.metrics(cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	bus, err := gilmsg.New(cfg, gilmsg.WithHooks(hooks), gilmsg.WithMaxMessageSize(o.maxMsgSize),
		gilmsg.WithLogger(slog.New(tailLog{slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})})))
	if err != nil {
		return err
	}
	defer bus.Close()
	defer onSIGHUP("tail", cmd.ErrOrStderr(), bus.Validator())()
	// The ACK and the status file say "handed to the user": both wait
	// for the line (Ack, Done).
	opts := []gilmsg.SubscribeOption{gilmsg.WithInvalidMessages(), gilmsg.WithManualAck()}
	if !acking {
		opts = append(opts, gilmsg.WithoutAck())
	}
	if o.noValidate {
		opts = append(opts, gilmsg.WithoutValidation())
	}
	if cfg.StatusDirectory != "" {
		opts = append(opts, gilmsg.WithCheckpoint(checkpointName(o.name)))
	}
	sub, err := bus.Subscribe(ctx, o.topic, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer sub.Close()
	stderr := cmd.ErrOrStderr()
	if sub.Ready() < sub.Endpoints() {
		fmt.Fprintf(stderr, "gilmsg tail: %d of %d endpoints connected so far; the others are retried in the background\n",
			sub.Ready(), sub.Endpoints())
	}

	w := cmd.OutOrStdout()
	p := printer{json: o.json, custom: tailFormat(o.query, o.terse)}
	if o.reallyPretty {
		p.pretty = &prettyPrinter{indent: "  ", ascii: true, color: isTerminal(cmd.OutOrStdout())}
	}
	printed, ackErrSaid := 0, false
	sayAckErr := func(err error) {
		if !ackErrSaid {
			// Once: each reliable publish to this tail will time out.
			ackErrSaid = true
			fmt.Fprintf(stderr, "gilmsg tail: %v\n", err)
		}
	}
	for m, err := range sub.Messages(ctx) {
		if err != nil {
			if errors.Is(err, gilmsg.ErrGap) {
				// Reported, and the tail goes on (see RELIABILITY.md).
				fmt.Fprintf(stderr, "gilmsg tail: %v\n", err)
				continue
			}
			if _, ok := errors.AsType[*gilmsg.AckError](err); ok {
				// An ACK the signers could not send, after its line.
				sayAckErr(err)
				continue
			}
			if m == nil {
				return err
			}
			if gilmsg.ReasonOf(err) != "" {
				fmt.Fprintf(stderr, "gilmsg tail: dropped a message from %s: %v\n", fromWhere(m), err)
				continue
			}
			// Printed anyway: the failure is ours (an ACK not sent).
			fmt.Fprintf(stderr, "gilmsg tail: %v\n", err)
		}
		// What this tail publishes is its own ACKs: not news.
		if acking && cfg.Name != "" && m.Name == cfg.Name {
			m.Done()
			continue
		}
		if (include != nil && !include.MatchString(m.Topic)) || (exclude != nil && exclude.MatchString(m.Topic)) {
			m.Done() // dropped on purpose: not to be asked for again
			continue
		}
		// One write per message, unbuffered: a tail is read live. A line
		// not written is neither ACKed nor recorded in the status file,
		// so a restart prints it.
		if err := p.print(w, m); err != nil {
			if errors.Is(err, syscall.EPIPE) {
				// The reader has gone ("| head -1"): a normal end.
				return nil
			}
			return fmt.Errorf("writing to stdout: %w", err)
		}
		// Signed and sent by the subscription's signers, on every core:
		// the next line need not wait for this one's signature.
		if acking {
			if err := m.AckAsync(ctx); err != nil && ctx.Err() == nil {
				sayAckErr(err)
			}
		}
		m.Done()
		if printed++; o.count > 0 && printed >= o.count {
			return nil
		}
	}
	// The loop ends only when ctx does: a signal is a normal end.
	return nil
}

// tailLog shows on stderr what the bus warns about (a peer that sent a
// message over --max-message-size, an endpoint skipped, ...), except
// invalid messages and ACKs not sent, which tail reports itself.
type tailLog struct{ slog.Handler }

func (h tailLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "gilmsg: invalid message" || r.Message == "gilmsg: cannot ACK" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h tailLog) WithAttrs(as []slog.Attr) slog.Handler { return tailLog{h.Handler.WithAttrs(as)} }
func (h tailLog) WithGroup(name string) slog.Handler    { return tailLog{h.Handler.WithGroup(name)} }

// config is the loaded configuration with the tail's identity applied;
// acking says whether the tail can publish, and so ACK.
func (o *tailOptions) config(cmd *cobra.Command) (cfg *gilmsg.Config, acking bool, err error) {
	if cfg, err = loadConfig(cmd); err != nil {
		return nil, false, err
	}
	switch {
	case o.noAck:
		cfg.Name, cfg.Active = "", false
	case o.name != "":
		cfg.Name, cfg.Active, acking = o.name, false, true
	default:
		// The config's name belongs to a service, which may be running
		// and bound there.
		cfg.Name, acking = "", cfg.Active
	}
	// Again: --name must be a name with endpoints.
	if err := cfg.Validate(); err != nil {
		return nil, false, err
	}
	return cfg, acking, nil
}

func compileFilter(flag, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, usageErrorf("--%s: %v", flag, err)
	}
	return re, nil
}

func fromWhere(m *gilmsg.Message) string {
	if m.Name == "" {
		return m.Endpoint
	}
	return m.Name + " (" + m.Endpoint + ")"
}

// printer writes one message in the format the flags chose.
type printer struct {
	custom func(*gilmsg.Message) ([]byte, error) // --terse or --query, which win
	json   bool
	pretty *prettyPrinter // --really-pretty, which wins over --json
}

func (p printer) print(w io.Writer, m *gilmsg.Message) error {
	var b []byte
	var err error
	switch {
	case p.custom != nil:
		b, err = p.custom(m)
	case p.pretty != nil:
		b, err = p.pretty.envelope(m)
	case p.json:
		b, err = jsonRecord(m)
	default:
		b, err = humanLine(m)
	}
	if err != nil {
		return fmt.Errorf("printing %s: %w", m.MsgID, err)
	}
	if _, err = w.Write(append(b, '\n')); err != nil {
		return err
	}
	// Stdout is unbuffered, so a finished Write has handed the line on; a
	// buffered writer must hand it on too before the message is ACKed.
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// jsonRecord is the --json line: the message's origin and signer, and the
// envelope exactly as decoded, in fedmsg's canonical encoding.
func jsonRecord(m *gilmsg.Message) ([]byte, error) {
	var b []byte
	var err error
	for i, f := range recordFields(m) {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		if b, err = gilmsg.AppendCanonical(b, f.key); err != nil {
			return nil, err
		}
		b = append(b, ':')
		if b, err = gilmsg.AppendCanonical(b, f.value); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

type field struct {
	key   string
	value any
}

// recordFields lists the fields of a --json record in the order they are
// printed.
func recordFields(m *gilmsg.Message) []field {
	return []field{
		{"name", m.Name},
		{"endpoint", m.Endpoint},
		{"topic", m.Topic},
		{"signer", m.Signer},
		{"msg", m.Fields()},
	}
}

// humanLine is the default format: local time, topic, signer ("-" when
// not validated) and the payload on one line.
func humanLine(m *gilmsg.Message) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(time.Unix(m.Timestamp, 0).Format("2006-01-02 15:04:05"))
	b.WriteByte(' ')
	b.WriteString(m.Topic)
	b.WriteByte(' ')
	if m.Signer != "" {
		b.WriteString(m.Signer)
	} else {
		b.WriteByte('-')
	}
	b.WriteByte(' ')
	if err := (&prettyPrinter{}).value(&b, m.Msg(), 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// isTerminal reports whether w is a terminal that colours suit. A
// character device is taken for a terminal; NO_COLOR and TERM=dumb say no.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// prettyPrinter renders decoded JSON for people: keys sorted, indented
// unless indent is "", and coloured; text as is rather than \u-escaped,
// unless ascii asks for fedmsg's escapes.
type prettyPrinter struct {
	indent string
	ascii  bool
	color  bool
}

// ANSI colours of --really-pretty.
const (
	ansiKey     = "\x1b[1;34m"
	ansiString  = "\x1b[32m"
	ansiNumber  = "\x1b[36m"
	ansiLiteral = "\x1b[35m"
	ansiReset   = "\x1b[0m"
)

// envelope is fedmsg-tail --really-pretty's text: the message without
// signature and certificate (fedmsg's strip_credentials). With indent
// "  " and ascii, and without colour, it is byte for byte Python's
// pretty_dumps of the same message, whose keys arrive sorted.
func (p *prettyPrinter) envelope(m *gilmsg.Message) ([]byte, error) {
	fields := maps.Clone(m.Fields())
	delete(fields, "signature")
	delete(fields, "certificate")
	var b bytes.Buffer
	if err := p.value(&b, fields, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// value writes v, a value as gilmsg.DecodeJSON returns them.
func (p *prettyPrinter) value(b *bytes.Buffer, v any, depth int) error {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteByte(',')
			}
			p.newline(b, depth+1)
			p.key(b, k)
			if err := p.value(b, v[k], depth+1); err != nil {
				return err
			}
		}
		p.newline(b, depth)
		b.WriteByte('}')
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			p.newline(b, depth+1)
			if err := p.value(b, e, depth+1); err != nil {
				return err
			}
		}
		p.newline(b, depth)
		b.WriteByte(']')
	case string:
		p.paint(b, ansiString, p.quote(v))
	default:
		// Numbers, booleans and null: written exactly as fedmsg would.
		text, err := gilmsg.MarshalCanonical(v)
		if err != nil {
			return err
		}
		colour := ansiNumber
		switch v.(type) {
		case nil, bool:
			colour = ansiLiteral
		}
		p.paint(b, colour, string(text))
	}
	return nil
}

func (p *prettyPrinter) key(b *bytes.Buffer, k string) {
	p.paint(b, ansiKey, p.quote(k))
	b.WriteByte(':')
	if p.indent != "" {
		b.WriteByte(' ')
	}
}

func (p *prettyPrinter) newline(b *bytes.Buffer, depth int) {
	if p.indent == "" {
		return
	}
	b.WriteByte('\n')
	for range depth {
		b.WriteString(p.indent)
	}
}

func (p *prettyPrinter) paint(b *bytes.Buffer, colour, text string) {
	if !p.color {
		b.WriteString(text)
		return
	}
	b.WriteString(colour)
	b.WriteString(text)
	b.WriteString(ansiReset)
}

func (p *prettyPrinter) quote(s string) string {
	if p.ascii {
		// fedmsg's escapes (json.dumps's ensure_ascii), as the canonical
		// encoder writes them.
		if text, err := gilmsg.MarshalCanonical(s); err == nil {
			return string(text)
		}
	}
	return quoteForPeople(s)
}

// quoteForPeople quotes s as a JSON string that keeps printable characters
// as they are, so that "café" is not printed "caf\u00e9".
func quoteForPeople(s string) string {
	if !utf8.ValidString(s) {
		// A lone surrogate (kept as WTF-8) has no UTF-8 form to show.
		if text, err := gilmsg.MarshalCanonical(s); err == nil {
			return string(text)
		}
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case !unicode.IsPrint(r):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
