package exitmon

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStartCmdChildSlack: with SetChildSlack a child begins with that timer
// slack, not the forking thread's, and the thread keeps its own; without,
// the child inherits the thread's.
func TestStartCmdChildSlack(t *testing.T) {
	m := New(newRecorder())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// This goroutine's thread is the server's: coarse slack. The test's
	// thread ends with it, slack and all.
	runtime.LockOSThread()
	const coarse = 3_000_000
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, coarse, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_TIMERSLACK: %v", err)
	}
	childSlack := func() string {
		cmd := exec.Command("cat", "/proc/self/timerslack_ns")
		var out strings.Builder
		cmd.Stdout = &out
		ch, err := m.StartCmd(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if code := waitCmd(cmd, ch); code != 0 {
			t.Fatalf("cat exited %d", code)
		}
		return strings.TrimSpace(out.String())
	}
	if got := childSlack(); got != "3000000" {
		t.Fatalf("without SetChildSlack the child's slack is %s, want the thread's 3000000", got)
	}
	m.SetChildSlack(50_000)
	if got := childSlack(); got != "50000" {
		t.Fatalf("child's slack %s, want 50000", got)
	}
	if own, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err != nil || own != coarse {
		t.Fatalf("the forking thread's slack is %d (%v) after the start, want %d back", own, err, coarse)
	}
}
