package shim

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCoarsenTimers: every thread of the process gets serverSlack (all of
// them as root, which may set other threads'), and the slack it had is
// returned for the children.
func TestCoarsenTimers(t *testing.T) {
	before, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { setAllSlack(before) }) // the package's other tests keep the default
	got, ok := coarsenTimers()
	if !ok || got != before {
		t.Fatalf("coarsenTimers = %d, %v; want %d, true", got, ok, before)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: other threads' slack is not ours to set")
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/" + tid.Name() + "/timerslack_ns")
		if err != nil {
			continue // the thread ended
		}
		if v, _ := strconv.Atoi(strings.TrimSpace(string(b))); v != serverSlack {
			t.Errorf("thread %s: slack %d, want %d", tid.Name(), v, serverSlack)
		}
	}
}

// setAllSlack sets every thread's timer slack to ns, as far as allowed.
func setAllSlack(ns int) {
	tids, _ := os.ReadDir("/proc/self/task")
	for _, tid := range tids {
		_ = os.WriteFile("/proc/"+tid.Name()+"/timerslack_ns", []byte(strconv.Itoa(ns)), 0)
	}
}
