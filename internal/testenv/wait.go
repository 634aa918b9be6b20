package testenv

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// CheckLeaks fails t, when it ends, if goroutines it started still run.
func CheckLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// WaitFor polls cond until it holds, failing t after a generous deadline
// (10s): a loaded machine is slow, and no test may time what it waits for.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
