package exitmon

import (
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// SetChildSlack makes every child that StartCmd starts from now on begin
// with ns nanoseconds of timer slack, whatever the slack of the shim's own
// threads. A child inherits the slack of the thread that forks it, and
// runc passes it on to the container's processes: a shim that coarsens its
// own timers must not coarsen theirs. 0 (the default) leaves children with
// the forking thread's slack.
func (m *Monitor) SetChildSlack(ns int) { m.childSlack.Store(int64(ns)) }

// startChild starts cmd with the children's timer slack: the forking
// thread takes it for the fork and then gets its own back.
func (m *Monitor) startChild(cmd *exec.Cmd) error {
	ns := m.childSlack.Load()
	if ns == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || int64(own) == ns {
		return cmd.Start()
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0); err != nil {
		return cmd.Start()
	}
	err = cmd.Start()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(own), 0, 0, 0)
	return err
}
