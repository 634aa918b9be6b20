package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progressEvery bounds how often the progress line is redrawn.
const progressEvery = 200 * time.Millisecond

// progress is logger's running count on stderr, redrawn in place, when
// stderr is a terminal; elsewhere (a file, a pipe, a log) it writes
// nothing. It first shows after progressEvery, so a short input leaves no
// trace. Lines of its own that the logger writes meanwhile go through
// clear first.
type progress struct {
	w     io.Writer // nil: quiet
	acks  bool      // show the ACKed count (reliable publishes)
	last  time.Time // last drawn, or the start
	shown bool      // the line is on the screen now
	ever  bool      // the line has been drawn

	sent, acked, failed int
}

func newProgress(w io.Writer, acks bool) *progress {
	p := &progress{acks: acks, last: time.Now()}
	if isTTY(w) {
		p.w = w
	}
	return p
}

// isTTY reports whether w is a terminal (a character device).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// count records one message's outcome and redraws, at most every
// progressEvery.
func (p *progress) count(sent, acked, failed bool) {
	if sent {
		p.sent++
	}
	if acked {
		p.acked++
	}
	if failed {
		p.failed++
	}
	if p.w != nil && time.Since(p.last) >= progressEvery {
		p.draw()
	}
}

func (p *progress) draw() {
	p.last, p.shown, p.ever = time.Now(), true, true
	line := fmt.Sprintf("gilmsg logger: %d sent", p.sent)
	if p.acks {
		line += fmt.Sprintf(", %d ACKed", p.acked)
	}
	line += fmt.Sprintf(", %d failed", p.failed)
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
}

// clear wipes the line before the logger writes one of its own; the next
// count draws it again.
func (p *progress) clear() {
	if p.w != nil && p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// done draws the final counts, if anything was drawn, and ends the line.
func (p *progress) done() {
	if p.w == nil || !p.ever {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
}
