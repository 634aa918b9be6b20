package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

type loggerOptions struct {
	message    string
	jsonInput  bool
	topic      string
	modname    string
	certPrefix string
	name       string
	recipients []string
	ackTimeout secondsValue
	waitSubs   int
	noResend   bool
}

// newLoggerCmd builds the command afresh so that tests get their own flags.
func newLoggerCmd() *cobra.Command {
	var o loggerOptions
	cmd := &cobra.Command{
		Use:   "logger",
		Short: "Publish --message, or each line of stdin, on the bus (fedmsg-logger)",
		Long: `logger publishes, like fedmsg-logger, --message or else each line of
stdin (trimmed) as {"log": "<line>"} on <topic_prefix>.<environment>.
<modname>.<topic>; with --json-input the text is parsed as JSON and
published as it is (blank lines are then skipped).

By default it is an active publisher, as fedmsg-logger is: it connects to
relay_inbound and signs with certnames["<cert-prefix>.<short hostname>"].
With --name it binds the first free endpoint of that name instead and
signs as that name (or by --cert-prefix when given).

A subscriber that has not subscribed yet when a plain message leaves
misses it: ZeroMQ's slow joiner. As fedmsg-logger does, the first message
waits until post_init_sleep (at least zmq_reconnect_ivl_max plus
zmq_reconnect_ivl) has passed since the logger bound (or connected), which
gives subscribers already running time to reconnect.
--wait-subscribers N waits instead until N subscriptions match the topic
(an active logger's relay counts as one), for at most the config's
timeout; --wait-subscribers 0 does not wait at all.

With --recipients the publish is reliable: each message waits until every
named certificate CN has ACKed it, or --ack-timeout passes. A message that
is not ACKed by all gets one line on stderr naming who is missing, the
remaining lines are still published, and the exit status is 3. A
--json-input line that is not JSON gets a stderr line too and is skipped;
the exit status is then 1. So does a line longer than max_message_size
(8 MiB by default; a subscriber would refuse the message): it is read
through without being held, its line number and size go to stderr, the
lines after it are published, and the exit status is 1; the same for a
shorter line whose message, with its envelope (~3 kB signed), would be
over it. Any other failure stops at once with status 1.
The ACK timeout is the config's ack_timeout, else 2 s (the larger of
timeout and twice zmq_reconnect_ivl_max): long enough for a recipient
that is reconnecting.

A reliable message is sent again only for a recipient that is late (no
ACK within four times its recent ACK delay, or 250 ms, whichever is
longer), and then only when a new subscription reaches the logger (a
recipient that was not subscribed yet, or reconnected), or once more well
after the usual ACK time. Python gilmsg consumers process every copy they
get; --no-resend sends each message once, as Python gilmsg-logger does.

Plain lines that arrive together (already read when the logger takes the
first of them; at most 512 lines or 1 MiB) are published together: signed
on every core, stored with persistent_store in one transaction, and sent
in their order. No line is held back to fill a batch: a line waits at most
for the batch before it. A publish that fails names the first line not
sent; none after it was sent, so feeding the input again from that line
repeats nothing and skips nothing.

An active logger whose relay is away (restarting) waits for it, up to the
ACK timeout for a reliable message and the config's timeout for a plain
one, then exits 1.`,
		Example: `  echo "deploy done" | gilmsg logger
  gilmsg logger --message '{"build": 42}' --json-input --topic build.done
  gilmsg logger --name publisher01 --recipients consumer01,consumer02 --ack-timeout 2 < jobs.txt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withExitCode(runLogger(cmd, &o))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.message, "message", "", "publish this `TEXT` instead of reading stdin")
	f.BoolVar(&o.jsonInput, "json-input", false, "parse each line (or --message) as JSON instead of wrapping it in {\"log\": ...}")
	f.StringVar(&o.topic, "topic", "log", "the last part of the full topic")
	f.StringVar(&o.modname, "modname", "logger", "the modname part of the full topic")
	f.StringVar(&o.certPrefix, "cert-prefix", "shell", "sign with certnames[\"`PREFIX`.<short hostname>\"] (with --name: only when given)")
	f.StringVar(&o.name, "name", "", "bind the endpoint of this `NAME` instead of connecting to relay_inbound")
	f.StringSliceVar(&o.recipients, "recipients", nil, "publish reliably: wait for the ACK of each certificate `CN` (repeatable, or comma-separated)")
	f.IntVar(&o.waitSubs, "wait-subscribers", 0, "before the first publish, wait until `N` subscriptions match the topic instead of post_init_sleep (0: no wait)")
	f.BoolVar(&o.noResend, "no-resend", false, "with --recipients, send each message once, even when a new subscriber may have missed it")
	f.Var(&o.ackTimeout, "ack-timeout", "wait this long for ACKs: `SECONDS` such as 0.25, or a duration such as 250ms (default: the config's ack_timeout, else 2s)")
	return cmd
}

func runLogger(cmd *cobra.Command, o *loggerOptions) error {
	if o.ackTimeout.d > 0 && len(o.recipients) == 0 {
		return usageErrorf("--ack-timeout needs --recipients")
	}
	if cmd.Flags().Changed("recipients") && !slices.ContainsFunc(o.recipients, func(r string) bool {
		return strings.Trim(r, ", \t") != ""
	}) {
		// Not a plain publish in disguise: the caller wanted ACKs.
		return usageErrorf("--recipients %q names nobody", strings.Join(o.recipients, ","))
	}
	if o.noResend && len(o.recipients) == 0 {
		return usageErrorf("--no-resend needs --recipients")
	}
	if o.waitSubs < 0 {
		return usageErrorf("--wait-subscribers %d: want 0 or more", o.waitSubs)
	}
	cfg, err := o.config(cmd)
	if err != nil {
		return err
	}
	ctx, stop := notify(cmd.Context())
	defer stop()
	// With persistent_store, each message is stored before it is sent.
	storeOpts, closeStore, err := storeOptions(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	// The bus's modname is the topics': WaitSubscribers matches on it too.
	busOpts := append(storeOpts, gilmsg.WithModname(o.modname))
	if cmd.Flags().Changed("wait-subscribers") {
		busOpts = append(busOpts, gilmsg.WithoutPostInitWait())
	}
	if o.noResend {
		busOpts = append(busOpts, gilmsg.WithoutResend())
	}
	bus, err := gilmsg.New(cfg, busOpts...)
	if err != nil {
		return err
	}
	// Close waits up to zmq_linger for queued messages to leave.
	defer bus.Close()
	if err := waitSubscribers(ctx, bus, o.topic, o.waitSubs, cfg.TimeoutDuration()); err != nil {
		return err
	}

	var opts []gilmsg.PublishOption
	if len(o.recipients) > 0 {
		opts = append(opts, gilmsg.WithRecipients(o.recipients...))
		if o.ackTimeout.d > 0 {
			opts = append(opts, gilmsg.WithAckTimeout(o.ackTimeout.d))
		}
	}
	var inputs <-chan []inputLine
	if cmd.Flags().Changed("message") {
		one := make(chan []inputLine, 1)
		one <- []inputLine{{where: "--message", text: o.message}}
		close(one)
		inputs = one
	} else {
		done := make(chan struct{})
		defer close(done)
		inputs = readLines(cmd.InOrStdin(), done, cfg.MaxMessageBytes())
	}

	stderr := cmd.ErrOrStderr()
	prog := newProgress(stderr, len(o.recipients) > 0)
	if cmd.Flags().Changed("message") {
		prog = newProgress(nil, false)
	}
	defer prog.done()
	l := &loggerRun{o: o, bus: bus, opts: opts, stderr: stderr, prog: prog, maxLine: cfg.MaxMessageBytes()}
	for {
		var lines []inputLine
		var ok bool
		select {
		case lines, ok = <-inputs:
		case <-ctx.Done():
			return fmt.Errorf("interrupted after %d messages", l.total)
		}
		if !ok {
			break
		}
		if err := l.publish(ctx, lines); err != nil {
			return err
		}
	}
	switch {
	case l.bad > 0 || l.tooLong > 0:
		var why []string
		if l.bad > 0 {
			why = append(why, fmt.Sprintf("%d were not valid JSON", l.bad))
		}
		if l.tooLong > 0 {
			why = append(why, fmt.Sprintf("%d were over max_message_size (%d bytes)", l.tooLong, l.maxLine))
		}
		return fmt.Errorf("of %d messages, %s", l.total, strings.Join(why, " and "))
	case l.unacked > 0:
		// Each one has had its stderr line already.
		return &exitError{code: exitTimeout, err: errors.New("")}
	}
	return nil
}

// loggerRun publishes the lines of one logger run.
type loggerRun struct {
	o      *loggerOptions
	bus    *gilmsg.Bus
	opts   []gilmsg.PublishOption
	stderr io.Writer
	prog   *progress

	total, unacked, bad int   // messages read, not ACKed by all, not JSON
	tooLong             int   // lines over maxLine, not published
	maxLine             int64 // max_message_size
}

// publish publishes lines that arrived together. Plain messages go as one
// batch (signed on every core, stored in one transaction, sent in order);
// reliable ones one by one, each waiting for its ACKs. The error, if any,
// names the first line not sent: none after it was sent either.
func (l *loggerRun) publish(ctx context.Context, lines []inputLine) error {
	batch := make([]gilmsg.BatchMessage, 0, len(lines))
	where := make([]string, 0, len(lines))
	for _, in := range lines {
		if in.err != nil {
			if err := l.publishBatch(ctx, batch, where); err != nil {
				return err
			}
			return in.err
		}
		if in.tooLong > 0 {
			l.total++
			l.tooLong++
			l.prog.clear()
			fmt.Fprintf(l.stderr, "gilmsg logger: %s: %d bytes, over max_message_size (%d): not published\n", in.where, in.tooLong, l.maxLine)
			l.prog.count(false, false, true)
			continue
		}
		msg, skip, err := l.o.payload(in.text)
		if skip {
			continue
		}
		l.total++
		if err != nil {
			l.bad++
			l.prog.clear()
			fmt.Fprintf(l.stderr, "gilmsg logger: %s: %v\n", in.where, err)
			l.prog.count(false, false, true)
			continue
		}
		if len(l.o.recipients) == 0 {
			batch, where = append(batch, gilmsg.BatchMessage{Topic: l.o.topic, Msg: msg}), append(where, in.where)
			continue
		}
		if err := l.publishReliable(ctx, in.where, msg); err != nil {
			return err
		}
	}
	return l.publishBatch(ctx, batch, where)
}

func (l *loggerRun) publishBatch(ctx context.Context, batch []gilmsg.BatchMessage, where []string) error {
	for len(batch) > 0 {
		receipts, err := l.bus.PublishBatch(ctx, batch, l.opts...)
		for range receipts {
			l.prog.count(true, false, false)
		}
		at := len(receipts)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("interrupted at %s", where[at])
		case !errors.Is(err, gilmsg.ErrMessageTooLarge):
			return fmt.Errorf("%s: %w", where[at], err)
		}
		l.refuseTooLarge(where[at], errors.Unwrap(err)) // less "message i of the batch"
		batch, where = batch[at+1:], where[at+1:]
	}
	return nil
}

// refuseTooLarge says on stderr that the message of the line at where was
// not published: with its envelope it is over max_message_size, which
// the line itself was not. The next lines are published, as after a line
// over max_message_size.
func (l *loggerRun) refuseTooLarge(where string, err error) {
	l.tooLong++
	l.prog.clear()
	fmt.Fprintf(l.stderr, "gilmsg logger: %s: %v: not published\n", where, err)
	l.prog.count(false, false, true)
}

func (l *loggerRun) publishReliable(ctx context.Context, where string, msg any) error {
	_, err := l.bus.Publish(ctx, l.o.topic, msg, l.opts...)
	var te *gilmsg.AckTimeoutError
	switch {
	case err == nil:
		l.prog.count(true, true, false)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted at %s", where)
	case errors.Is(err, gilmsg.ErrMessageTooLarge):
		l.refuseTooLarge(where, err)
	case errors.As(err, &te):
		l.unacked++
		l.prog.clear()
		fmt.Fprintf(l.stderr, "gilmsg logger: %s: %s\n", where, describeTimeout(te))
		l.prog.count(true, false, true)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// config is the loaded configuration with the logger's identity applied.
func (o *loggerOptions) config(cmd *cobra.Command) (*gilmsg.Config, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	if o.name != "" {
		cfg.Name, cfg.Active = o.name, false
		if cmd.Flags().Changed("cert-prefix") {
			cfg.CertPrefix = o.certPrefix
		}
	} else {
		// fedmsg-logger's identity: an active publisher named
		// relay_inbound, signing by cert_prefix.
		cfg.Name, cfg.Active, cfg.CertPrefix = "relay_inbound", true, o.certPrefix
	}
	// Again: --name must be a name with endpoints.
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// waitSubscribers waits, up to timeout (0: no bound), until n
// subscriptions would receive a message on topic.
func waitSubscribers(ctx context.Context, bus *gilmsg.Bus, topic string, n int, timeout time.Duration) error {
	if n == 0 {
		return nil
	}
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := bus.WaitSubscribers(wctx, topic, n); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while waiting for subscribers")
		}
		return fmt.Errorf("%d of %d subscribers after %v (the config's timeout): %w", bus.Subscribers(topic), n, timeout, err)
	}
	return nil
}

// payload turns one input text into the msg to publish; skip is set for
// the blank lines of --json-input, which hold nothing to parse.
func (o *loggerOptions) payload(text string) (msg any, skip bool, err error) {
	if !o.jsonInput {
		return map[string]any{"log": text}, false, nil
	}
	if text == "" {
		return nil, true, nil
	}
	// gilmsg's decoder keeps numbers exactly as written, as Python does.
	v, err := gilmsg.DecodeJSON([]byte(text))
	return v, false, err
}

// describeTimeout is the one stderr line of a message not ACKed by all.
func describeTimeout(te *gilmsg.AckTimeoutError) string {
	s := fmt.Sprintf("no ACK from %s within %v (msg_id %s", strings.Join(te.Missing, ", "), te.Timeout, te.MsgID)
	if len(te.Acked) > 0 {
		acked := make([]string, len(te.Acked))
		for i, a := range te.Acked {
			acked[i] = a.Recipient
		}
		s += "; ACKed by " + strings.Join(acked, ", ")
	}
	for _, r := range te.Rejected {
		s += "; " + r.String()
	}
	return s + ")"
}

// inputLine is one line of stdin, or the error that ended reading.
type inputLine struct {
	where   string // "line N", for messages
	text    string
	tooLong int64 // set for a line over the bound: its size, its text not kept
	err     error
}

// Lines that arrive together are published together (one store
// transaction), in batches of at most maxLineBatch lines and about
// maxBatchBytes bytes (a batch always takes one whole line).
const (
	maxLineBatch  = 512
	maxBatchBytes = 1 << 20
)

// readLines reads r line by line in its own goroutine, so that a signal
// is noticed while stdin is idle, and hands on the lines that arrived
// together as one batch: those already read from r when the first is
// handed on. No line waits for others to fill a batch. Lines are trimmed
// as fedmsg-logger trims them; the goroutine ends at EOF, at a read
// error, or once done is closed (unless it is blocked reading: the
// process is exiting then). A line of more than maxLine bytes (its
// newline aside; 0 or less: no bound) is read through without being
// kept, and handed on as its size alone.
func readLines(r io.Reader, done <-chan struct{}, maxLine int64) <-chan []inputLine {
	out := make(chan []inputLine)
	go func() {
		defer close(out)
		br := bufio.NewReaderSize(r, 64<<10)
		n := 0
		for end := false; !end; {
			var batch []inputLine
			size := 0
			for {
				n++
				line, long, err := readLine(br, maxLine)
				switch {
				case err != nil && !errors.Is(err, io.EOF):
					batch = append(batch, inputLine{err: fmt.Errorf("reading stdin, line %d: %w", n, err)})
				case long > 0:
					batch = append(batch, inputLine{where: "line " + strconv.Itoa(n), tooLong: long})
				case err == nil || line != "":
					batch = append(batch, inputLine{where: "line " + strconv.Itoa(n), text: strings.TrimSpace(line)})
				}
				size += len(line)
				if err != nil {
					end = true
					break
				}
				if len(batch) >= maxLineBatch || size >= maxBatchBytes || !lineBuffered(br) {
					break
				}
			}
			if len(batch) == 0 {
				return
			}
			select {
			case out <- batch:
			case <-done:
				return
			}
		}
	}()
	return out
}

// readLine reads one line from br, its newline included, as ReadString
// does; but past maxLine bytes (above 0) it keeps nothing more, reads on
// to the newline, and returns the line's size (its newline aside) as long
// instead of the line, so that an endless line costs no more memory than
// maxLine.
func readLine(br *bufio.Reader, maxLine int64) (line string, long int64, err error) {
	if maxLine <= 0 {
		line, err = br.ReadString('\n')
		return line, 0, err
	}
	var buf []byte
	var size int64
	for {
		chunk, err := br.ReadSlice('\n')
		n := int64(len(chunk))
		if err == nil {
			n-- // the newline
		}
		size += n
		if size > maxLine {
			buf = nil
		} else {
			buf = append(buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if size > maxLine {
			return "", size, err
		}
		return string(buf), 0, err
	}
}

// lineBuffered says whether a whole line is buffered in br already, so
// that reading it waits for nothing.
func lineBuffered(br *bufio.Reader) bool {
	buf, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(buf, '\n') >= 0
}

// secondsValue is a flag holding a duration written either as Python
// gilmsg does, in (fractional) seconds, or as a Go duration.
type secondsValue struct{ d time.Duration }

func (s *secondsValue) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if !(f > 0) || f > math.MaxInt64/float64(time.Second) {
			return fmt.Errorf("%s: want a positive number of seconds", v)
		}
		s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q: want seconds (0.25) or a positive duration (250ms)", v)
	}
	s.d = d
	return nil
}

func (s *secondsValue) String() string {
	if s.d == 0 {
		return ""
	}
	return s.d.String()
}

func (s *secondsValue) Type() string { return "seconds" }

// notify is signal.NotifyContext for the signals that end a command.
func notify(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
