package trigger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
)

func triggerMsg(t *testing.T, topic string, payload any) *gilmsg.Message {
	t.Helper()
	text, err := gilmsg.MarshalCanonical(map[string]any{"topic": topic, "msg": payload, "msg_id": topic, "timestamp": 1700000000, "i": 1})
	if err != nil {
		t.Fatal(err)
	}
	env, err := gilmsg.ParseEnvelope(text)
	if err != nil {
		t.Fatal(err)
	}
	return &gilmsg.Message{Envelope: env, Body: text}
}

// seqOf yields msgs, calling before(i) ahead of each.
func seqOf(msgs []*gilmsg.Message, before func(i int)) iter.Seq2[*gilmsg.Message, error] {
	return func(yield func(*gilmsg.Message, error) bool) {
		for i, m := range msgs {
			if before != nil {
				before(i)
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// triggerRecorder is a Trigger action that records the topics it ran for.
type triggerRecorder struct {
	mu     sync.Mutex
	topics []string
	fail   string // a topic whose action fails
}

func (r *triggerRecorder) action(_ context.Context, m *gilmsg.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, m.Topic)
	if m.Topic == r.fail {
		return errors.New("failing on purpose")
	}
	return nil
}

func (r *triggerRecorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...)
}

func TestTriggerFiltersAndGoesOnAfterFailures(t *testing.T) {
	testenv.CheckLeaks(t)
	var msgs []*gilmsg.Message
	for _, topic := range []string{"a.one", "a._heartbeat", "b.two", "a.three", "a.four"} {
		msgs = append(msgs, triggerMsg(t, topic, nil))
	}
	var logs bytes.Buffer
	rec := &triggerRecorder{fail: "a.three"}
	tr := &Trigger{
		Include: regexp.MustCompile(`^a\.`), Exclude: regexp.MustCompile(`_heartbeat`),
		Action: rec.action, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	if err := tr.Run(context.Background(), seqOf(msgs, nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(rec.ran(), " "), "a.one a.three a.four"; got != want {
		t.Errorf("ran %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "failing on purpose") || !strings.Contains(logs.String(), "a.three") {
		t.Errorf("the failure was not logged with its message: %s", logs.String())
	}
}

// With a long wait, nothing runs until the queue passes MaxQueueSize; then
// everything queued runs, in order.
func TestTriggerMaxQueueSizeEndsTheWait(t *testing.T) {
	testenv.CheckLeaks(t)
	var msgs []*gilmsg.Message
	for i := range 4 {
		msgs = append(msgs, triggerMsg(t, fmt.Sprintf("t.%d", i), nil))
	}
	rec := &triggerRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := make(chan struct{})
	seq := func(yield func(*gilmsg.Message, error) bool) {
		seqOf(msgs, func(i int) {
			// The trigger has taken i messages; with i <= 3 it is still
			// waiting.
			if n := len(rec.ran()); n != 0 {
				t.Errorf("ran %d before the queue was full", n)
			}
		})(yield)
		select { // a live bus: no more messages for now
		case <-hold:
		case <-ctx.Done():
		}
	}
	tr := &Trigger{WaitFor: time.Hour, MaxQueueSize: 3, Action: rec.action}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, seq) }()
	testenv.WaitFor(t, "four actions", func() bool { return len(rec.ran()) == 4 })
	if got := strings.Join(rec.ran(), " "); got != "t.0 t.1 t.2 t.3" {
		t.Errorf("ran %q", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestShellCommandStdinNotQuoted(t *testing.T) {
	testenv.CheckLeaks(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "stdin")
	pwned := filepath.Join(dir, "pwned")
	m := triggerMsg(t, "org.example.dev.x", map[string]any{"text": "it's'; touch " + pwned + "; echo '$(touch " + pwned + ")"})
	run := ShellCommand("cat > "+out+"; exit 7", nil, nil)
	err := run(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), "status 7") {
		t.Errorf("err = %v, want the exit status", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Envelope.Body()
	if string(got) != string(want)+"\n" {
		t.Errorf("stdin = %q, want the canonical JSON and a newline %q", got, want)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("the message's content ran as a command")
	}
}

func TestTriggerStopsARunningCommand(t *testing.T) {
	testenv.CheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := filepath.Join(t.TempDir(), "started")
	tr := &Trigger{Action: ShellCommand("touch "+started+"; exec sleep 60", nil, nil)}
	seq := func(yield func(*gilmsg.Message, error) bool) {
		if yield(triggerMsg(t, "x", nil), nil) {
			<-ctx.Done()
		}
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, seq) }()
	testenv.WaitFor(t, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop the command")
	}
}

// TestTriggerQueueBoundedInBytes: a slow action makes Trigger stop
// reading once QueueBytes wait, not only QueueLimit messages (100 of 4 MB
// behind `sleep 50` took 430-530 MB; the message bound alone allows 80 GB).
func TestTriggerQueueBoundedInBytes(t *testing.T) {
	const n, size = 100, 4 << 20
	body := bytes.Repeat([]byte("x"), size) // shared: what counts is its length
	msgs := make([]*gilmsg.Message, n)
	for i := range msgs {
		m := triggerMsg(t, fmt.Sprintf("org.example.dev.big.%d", i), 1)
		m.Body = body
		msgs[i] = m
	}
	var mu sync.Mutex
	read := 0
	release := make(chan struct{})
	tr := &Trigger{Action: func(ctx context.Context, _ *gilmsg.Message) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, seqOf(msgs, func(int) { mu.Lock(); read++; mu.Unlock() }))
	}()
	reads := func() int { mu.Lock(); defer mu.Unlock(); return read }
	// DefaultQueueBytes/size running or queued, one in hand.
	want := DefaultQueueBytes/size + 1
	deadline := time.Now().Add(10 * time.Second)
	for reads() < want {
		if time.Now().After(deadline) {
			t.Fatalf("read %d messages, want %d", reads(), want)
		}
		time.Sleep(time.Millisecond)
	}
	// Nothing more may be read while the action is stuck; a trigger that
	// queued by count only had read all 100 by now.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if got := reads(); got > want+1 {
			t.Fatalf("read %d messages of %d bytes while the action was stuck: the queue holds more than %d bytes",
				got, size, DefaultQueueBytes)
		}
	}
	close(release)
	cancel()
	<-done
}

// A Trigger without an action or without messages, or given a nil
// message, says so: no panic.
func TestTriggerRefusesWhatIsMissing(t *testing.T) {
	if err := (&Trigger{}).Run(context.Background(), seqOf(nil, nil)); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("no Action: %v, want ErrConfig", err)
	}
	rec := &triggerRecorder{}
	if err := (&Trigger{Action: rec.action}).Run(context.Background(), nil); !errors.Is(err, gilmsg.ErrConfig) {
		t.Errorf("nil messages: %v, want ErrConfig", err)
	}
	msgs := []*gilmsg.Message{nil, triggerMsg(t, "a", nil)}
	if err := (&Trigger{Action: rec.action, Include: regexp.MustCompile(`a`)}).Run(context.Background(), seqOf(msgs, nil)); err != nil || len(rec.ran()) != 1 {
		t.Errorf("a nil message then one: %v, ran %q", err, rec.ran())
	}
}
