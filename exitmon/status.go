package exitmon

import (
	"time"

	"golang.org/x/sys/unix"
)

// Status is how a process ended, in the form containerd reports it.
type Status struct {
	Pid int `json:"pid"`
	// Code is the exit code, or 128+signal for a process killed by a signal.
	Code     int       `json:"status"`
	ExitedAt time.Time `json:"exited_at"`
	// OOM is set when the kernel's OOM killer ended the container.
	OOM bool `json:"oom,omitempty"`
}

// codeOf converts a wait status into containerd's exit code convention.
func codeOf(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
