package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY returns both ends of a new pseudo-terminal, or skips the test
// where there is none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlocking the pseudo-terminal: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("naming the pseudo-terminal: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestProgressOnATerminalOnly(t *testing.T) {
	t.Parallel()
	master, slave := openPTY(t)
	p := newProgress(slave, true)
	p.last = time.Time{} // as if the input had been long already
	p.count(true, true, false)
	p.clear()
	p.count(true, false, true)
	p.done()
	slave.Close()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf) // ends with EIO once the slave is closed
		got.Write(buf[:n])
		if err != nil || strings.Contains(got.String(), "1 failed") && strings.HasSuffix(got.String(), "\n") {
			break
		}
	}
	for _, want := range []string{"\rgilmsg logger: 1 sent, 1 ACKed, 0 failed\x1b[K", "\r\x1b[K", "2 sent, 1 ACKed, 1 failed"} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("terminal got %q, want %q in it", got.String(), want)
		}
	}

	var quiet bytes.Buffer
	q := newProgress(&quiet, true)
	q.last = time.Time{}
	q.count(true, true, false)
	q.done()
	if quiet.Len() != 0 {
		t.Errorf("not a terminal, yet %q", quiet.String())
	}
}
