//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestSharedPidNamespaceCleanup: a container that joins another's pid
// namespace leaves a background process behind when its init exits 3. The
// shim must kill what is left (the kernel does not: the namespace's init
// is the other container's) and still report 3.
func TestSharedPidNamespaceCleanup(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		events := subscribe(t, c)
		mustCtr(t, c, "run", "-d", "--runtime", rt.Type, harness.BusyboxImage, "host", "sleep", "600")
		start := waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/start" && e.ContainerID == "host" })
		mustCtr(t, c, "run", "-d", "--runtime", rt.Type, "--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", start.Pid),
			harness.BusyboxImage, "guest", "sh", "-c", "sleep 777 & sleep 1; exit 3")
		e := waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/exit" && e.ContainerID == "guest" })
		if e.ExitStatus != 3 {
			t.Errorf("%s: guest exit %d, want 3", rt.Handler, e.ExitStatus)
		}
		deadline := time.Now().Add(10 * time.Second)
		for leftover := findCmdline("sleep777"); leftover != 0; leftover = findCmdline("sleep777") {
			if time.Now().After(deadline) {
				t.Errorf("%s: pid %d (sleep 777) survived its container's init", rt.Handler, leftover)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// findCmdline returns a live (not zombie) process whose argv, joined
// without separators, is want.
func findCmdline(want string) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if strings.ReplaceAll(string(b), "\x00", "") == want {
			return pid
		}
	}
	return 0
}
