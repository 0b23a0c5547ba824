//go:build e2e

package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestCheckpointWithoutCriu: on a machine without criu, Checkpoint fails
// with an error that names criu, and the container keeps running.
func TestCheckpointWithoutCriu(t *testing.T) {
	if _, err := exec.LookPath("criu"); err == nil {
		t.Skip("criu is installed: this test is for machines without it")
	}
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		mustCtr(t, c, "run", "-d", "--runtime", rt.Type, harness.BusyboxImage, "ck", "sleep", "600")
		_, err := c.Ctr("task", "checkpoint", "--image-path", c.Dir+"/ck-image", "ck")
		t.Logf("%s: checkpoint without criu: %v", rt.Handler, err)
		if err == nil || !strings.Contains(err.Error(), "criu") {
			if rt.Handler == "watch" {
				t.Errorf("watch: checkpoint error %v, want one naming criu", err)
			}
		}
		if out := mustCtr(t, c, "task", "ls"); !strings.Contains(out, "RUNNING") {
			t.Errorf("%s: after a failed checkpoint: %s", rt.Handler, out)
		}
	})
}
