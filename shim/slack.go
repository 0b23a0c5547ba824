package shim

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// serverSlack is the timer slack of the server's threads, in ns.
//
// Go's sysmon thread wakes every 20 µs for as long as the shim's one P is
// busy, and the kernel's default slack (50 µs) lets it: on a virtual
// machine, where a context switch is dear, those wake-ups were a third of a
// shim's CPU per exec. With 1 ms of slack the kernel may let each of them
// (and every other timer of the server) fire up to 1 ms late, and batches
// them with other work. Nothing in the shim waits on a timer for its
// answers: exits wake it through pidfds and requests through its socket.
// Children get the slack the shim was started with (exitmon's
// SetChildSlack), so runc and containers keep theirs.
const serverSlack = 1_000_000

// coarsenTimers gives every thread of the server serverSlack and returns the
// slack the server was started with, for its children; ok is false when it
// could not read that (and then changed nothing). Threads made later
// inherit their creator's slack. Setting another thread's slack takes
// CAP_SYS_NICE: a thread it could not set keeps its slack.
func coarsenTimers() (started int, ok bool) {
	started, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, false
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return started, true
	}
	v := []byte(strconv.Itoa(serverSlack))
	for _, tid := range tids {
		_ = os.WriteFile("/proc/"+tid.Name()+"/timerslack_ns", v, 0)
	}
	return started, true
}
