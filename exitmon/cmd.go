package exitmon

import (
	"os/exec"
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
	if err := m.startChild(cmd); err != nil {
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
