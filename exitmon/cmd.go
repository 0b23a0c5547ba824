package exitmon

import (
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// StartCmd starts cmd and returns a channel that receives its exit once.
// Use it instead of cmd.Wait: the monitor reaps every child.
func (m *Monitor) StartCmd(cmd *exec.Cmd) (<-chan Status, error) {
	t := m.Begin()
	fd := -1
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.PidFD = &fd
	if err := cmd.Start(); err != nil {
		m.Cancel(t)
		return nil, err
	}
	ch := make(chan Status, 1)
	m.track(t, cmd.Process.Pid, fd, func(st Status) { ch <- st })
	if fd >= 0 {
		unix.Close(fd)
	}
	return ch, nil
}

// StartCmdLocked is StartCmd with the starting goroutine locked to its OS
// thread until the child exits, for children that use a parent-death signal.
func (m *Monitor) StartCmdLocked(cmd *exec.Cmd) (<-chan Status, error) {
	type started struct {
		ch  <-chan Status
		err error
	}
	res := make(chan started, 1)
	out := make(chan Status, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ch, err := m.StartCmd(cmd)
		res <- started{ch, err}
		if err == nil {
			out <- <-ch
		}
	}()
	r := <-res
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}
