//go:build e2e

package e2e

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestShimKilledAfterExecProbes: a container is probed by many execs, each
// deleted after its exit, as kubelet's exec probes are. The container then
// exits 7 and its shim is SIGKILLed: `shim delete` answers 7 from the node
// log (the shim's exit journal), past the probes' records.
func TestShimKilledAfterExecProbes(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	const probes = 80
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		events := subscribe(t, c)
		mustCtr(t, c, "run", "-d", "--runtime", harness.WatchRuntime, harness.BusyboxImage, "probed",
			"sh", "-c", "while [ ! -e /go ]; do sleep 0.1; done; exit 7")
		for i := range probes {
			mustCtr(t, c, "tasks", "exec", "--exec-id", fmt.Sprintf("probe-%058x", i), "probed", "true")
		}
		mustCtr(t, c, "tasks", "exec", "--exec-id", "go", "probed", "touch", "/go")
		first := waitEvent(t, events, func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.ContainerID == "probed" && e.ID == "probed"
		})
		if first.ExitStatus != 7 {
			t.Fatalf("init TaskExit status %d, want 7", first.ExitStatus)
		}
		pids := c.ShimPids("watch")
		if len(pids) != 1 {
			t.Fatalf("shims %v, want one", pids)
		}
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		after := waitEvent(t, events, func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.ContainerID == "probed" && e.ID == "probed"
		})
		if after.ExitStatus != 7 {
			t.Errorf("after shim SIGKILL containerd reported exit %d, want 7", after.ExitStatus)
		}
		c.Ctr("containers", "delete", "probed")
	})
}
