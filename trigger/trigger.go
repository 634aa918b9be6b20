package trigger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/untrusted"
)

// Defaults of [Trigger.QueueLimit] and [Trigger.QueueBytes]. 10,000
// messages of 8 MiB (max_message_size) would be 80 GB: the bytes bound is
// what holds for big messages, the count for small ones.
const (
	DefaultQueueLimit = 10000
	DefaultQueueBytes = 64 << 20
)

// Trigger runs an action for each message that matches, as fedmsg-trigger
// does, optionally after a quiet period:
//
//   - A message whose topic Exclude matches, or Include does not (regular
//     expressions searched anywhere in the full topic), is skipped.
//   - Each other message is queued. With WaitFor, the queue runs once no
//     message has come for that long (each message restarts the wait), or
//     at once when it holds more than MaxQueueSize (if above 0) messages;
//     without, at once.
//   - The queue runs in order, one action at a time. A failing action is
//     logged, and the next message goes on. Messages that arrive while
//     actions run are run right after them, without a new wait.
//
// Memory is bounded: past QueueLimit queued messages or QueueBytes of
// messages (queued or in the batch being run), Trigger stops reading, and the bus drops what exceeds
// high_water_mark, as for any slow subscriber.
type Trigger struct {
	Include, Exclude *regexp.Regexp // nil: no filter
	WaitFor          time.Duration
	MaxQueueSize     int
	// QueueLimit caps the messages waiting to be run. Default
	// [DefaultQueueLimit].
	QueueLimit int
	// QueueBytes caps the bytes of the messages waiting to be run (their
	// bodies as received); one message is always taken. Default
	// [DefaultQueueBytes].
	QueueBytes int64
	// Action is run for each message; see [ShellCommand].
	Action func(ctx context.Context, m *gilmsg.Message) error
	// Logger gets the failures. Default: nothing is logged.
	Logger *slog.Logger
}

// Run reads msgs, such as [gilmsg.Bus.Tail] yields them, until ctx ends: msgs
// must end then too, as a tail on ctx does. The action that is running
// finishes (ctx is its context, so it is told), the messages still queued
// are dropped, logged, and Run returns ctx.Err(). If msgs ends first,
// what is queued runs without waiting and Run returns nil. Errors the
// iterator yields are logged and skipped.
func (t *Trigger) Run(ctx context.Context, msgs iter.Seq2[*gilmsg.Message, error]) error {
	if t.Action == nil {
		return fmt.Errorf("%w: Trigger needs an Action", gilmsg.ErrConfig)
	}
	if msgs == nil {
		return fmt.Errorf("%w: Trigger.Run needs messages to read", gilmsg.ErrConfig)
	}
	log := t.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := t.QueueLimit
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	limitBytes := t.QueueBytes
	if limitBytes <= 0 {
		limitBytes = DefaultQueueBytes
	}

	in := make(chan *gilmsg.Message)
	readerDone := make(chan struct{})
	stopReading := make(chan struct{})
	go func() {
		defer close(in)
		defer close(readerDone)
		for m, err := range msgs {
			if err != nil {
				log.Warn("gilmsg: trigger", slog.Any("error", err))
				continue
			}
			if m == nil { // no bus yields one; a hand-made iterator might
				continue
			}
			if (t.Exclude != nil && t.Exclude.MatchString(m.Topic)) || (t.Include != nil && !t.Include.MatchString(m.Topic)) {
				continue
			}
			select {
			case in <- m:
			case <-stopReading:
				return
			}
		}
	}()

	batches := make(chan []*gilmsg.Message)
	workerIdle := make(chan struct{})
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		for batch := range batches {
			for _, m := range batch {
				if ctx.Err() != nil {
					break
				}
				if err := t.Action(ctx, m); err != nil {
					log.Error("gilmsg: trigger action failed", untrusted.Attr("topic", m.Topic), untrusted.Attr("msg_id", m.MsgID), slog.Any("error", err))
				}
			}
			workerIdle <- struct{}{}
		}
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		pending      []*gilmsg.Message
		pendingBytes int64
		runningBytes int64 // of the batch the worker has
		ready        bool  // the wait is over: run pending as soon as the worker is free
		running      bool
		ended        bool // msgs ended: run what is queued, then return
	)
	for ctx.Err() == nil && (!ended || running || len(pending) > 0) {
		var inCh <-chan *gilmsg.Message
		if !ended && len(pending) < limit && pendingBytes+runningBytes < limitBytes {
			inCh = in
		}
		var out chan<- []*gilmsg.Message
		if ready && !running && len(pending) > 0 {
			out = batches
		}
		select {
		case m, ok := <-inCh:
			if !ok {
				ended, ready = true, true
				break
			}
			pending = append(pending, m)
			pendingBytes += messageBytes(m)
			switch {
			case running, ready:
			case t.WaitFor <= 0 || (t.MaxQueueSize > 0 && len(pending) > t.MaxQueueSize):
				timer.Stop()
				ready = true
			default:
				timer.Reset(t.WaitFor)
			}
		case <-timer.C:
			ready = true
		case out <- pending:
			pending, ready, running = nil, false, true
			pendingBytes, runningBytes = 0, pendingBytes
		case <-workerIdle:
			running, runningBytes = false, 0
			ready = len(pending) > 0
		case <-ctx.Done():
		}
	}
	timer.Stop()
	close(stopReading)
	close(batches)
	if running {
		<-workerIdle
	}
	<-workerDone
	for range in { // the reader may be blocked on a send; let it see stopReading
	}
	<-readerDone
	if len(pending) > 0 {
		log.Warn("gilmsg: trigger stopped with messages not run", slog.Int("queued", len(pending)))
	}
	return ctx.Err()
}

// messageBytes is what m costs a queue: its body as received, or its
// topic for a message made without one.
func messageBytes(m *gilmsg.Message) int64 { return int64(len(m.Body) + len(m.Topic)) }

// ShellCommand is a [Trigger] action that runs command with the shell
// (bash, as fedmsg-trigger does, or sh where there is no bash), giving it
// the message's canonical JSON and a newline on stdin. The message never
// becomes part of the command line: fedmsg-trigger's `echo '<json>' |`
// breaks on a single quote in a message, and lets a message run commands.
// The command's stdout and stderr go to the given writers' (nil: none).
// A command that exits with a non-zero status is an [*exec.ExitError]. When
// ctx ends, the command gets SIGTERM, then SIGKILL 2s later.
func ShellCommand(command string, stdout, stderr io.Writer) func(ctx context.Context, m *gilmsg.Message) error {
	shell := "/bin/sh"
	if p, err := exec.LookPath("bash"); err == nil {
		shell = p
	}
	return func(ctx context.Context, m *gilmsg.Message) error {
		body, err := m.Envelope.Body()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, shell, "-c", command)
		cmd.Stdin = bytes.NewReader(append(body, '\n'))
		if stdout != nil {
			cmd.Stdout = stdout
		}
		if stderr != nil {
			cmd.Stderr = stderr
		}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 2 * time.Second
		err = cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("command exited with status %d: %w", ee.ExitCode(), err)
		}
		return err
	}
}
