package proc

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// TestRuncInFlightStopsThreadTrim: while a runc started with a parent-death
// signal runs, a thread trim is refused (ending the thread that forked it
// would kill it); once it exited the trim may run, and a launch waits for
// the trim to finish.
func TestRuncInFlightStopsThreadTrim(t *testing.T) {
	m := exitmon.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	r := runcReaper{m}

	cmd := exec.Command("sleep", "0.3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ch, err := r.StartLocked(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if resume, ok := StopRuncLaunches(); ok {
		resume()
		t.Fatal("thread trim allowed while a runc runs")
	}
	if e := <-ch; e.Status != 0 {
		t.Fatalf("sleep exited %d", e.Status)
	}
	resume, ok := StopRuncLaunches()
	if !ok {
		t.Fatal("thread trim refused after the runc exited")
	}
	started := make(chan error, 1)
	go func() {
		ch, err := r.StartLocked(exec.Command("true"))
		if err == nil {
			<-ch
		}
		started <- err
	}()
	select {
	case <-started:
		resume()
		t.Fatal("a runc started during a thread trim")
	case <-time.After(100 * time.Millisecond):
	}
	resume()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartLocked(exec.Command("/nonexistent/runc")); err == nil {
		t.Fatal("start of a missing binary succeeded")
	}
	if resume, ok := StopRuncLaunches(); !ok {
		t.Fatal("a failed start left a runc counted in flight")
	} else {
		resume()
	}
}
