//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestScenarioPod: a CRI pod with two containers served by one shim
// process; a sync exec returns its output and exit code; container logs
// land in the pod's log directory; stop, rm, stopp and rmp succeed and the
// shim exits after rmp.
func TestScenarioPod(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		pod := harness.Pod{Name: "scpod-" + rt.Handler}
		podID, err := c.RunPod(pod, rt.Handler)
		if err != nil {
			t.Fatal(err)
		}
		specs := []harness.Container{
			// exits 0 on SIGTERM
			{Name: "first", Command: harness.Sh(`trap "exit 0" TERM; echo hello-first; while :; do sleep 1; done`)},
			// ignores SIGTERM: stop ends in SIGKILL
			{Name: "second", Command: harness.Sh(`echo hello-second; ` + ignoreTerm)},
		}
		var ids []string
		for _, ct := range specs {
			id, err := c.CreateContainer(podID, pod, ct)
			if err != nil {
				t.Fatal(err)
			}
			mustCrictl(t, c, "start", id)
			ids = append(ids, id)
		}
		for _, id := range ids {
			waitState(t, c, id, "CONTAINER_RUNNING")
		}

		if pids := c.ShimPids(rt.Handler); len(pids) != 1 {
			t.Errorf("%s: shim processes serving the pod: %v, want exactly 1", rt.Handler, pids)
		}

		// crictl exits 1 and reports the exec's code in its message.
		out, err := c.Crictl("exec", ids[0], "sh", "-c", "echo hi; exit 2")
		if err == nil || !strings.Contains(err.Error(), "exit code 2") || !strings.Contains(out, "hi") {
			t.Errorf("crictl exec: output %q (err %v), want hi and exit code 2", out, err)
		}
		out, err = c.Crictl("exec", ids[1], "sh", "-c", "echo ok")
		if err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("crictl exec in second: %q (err %v), want ok", out, err)
		}

		for i, ct := range specs {
			want := "hello-" + ct.Name
			ok := eventually(10*time.Second, func() bool {
				out, _ := c.Crictl("logs", ids[i])
				return strings.Contains(out, want)
			})
			if !ok {
				out, err := c.Crictl("logs", ids[i])
				t.Errorf("crictl logs %s: %q (err %v), want %s", ct.Name, out, err, want)
			}
			data, err := os.ReadFile(filepath.Join(c.Dir, "pods", pod.Name, ct.Name+".log"))
			if err != nil || !strings.Contains(string(data), want) {
				t.Errorf("log file of %s: %q (err %v), want %s", ct.Name, data, err, want)
			}
		}

		wantCodes := []int{0, 137}
		for i, id := range ids {
			mustCrictl(t, c, "stop", "--timeout", "2", id)
			state, code, err := c.ContainerState(id)
			if err != nil || state != "CONTAINER_EXITED" || code != wantCodes[i] {
				t.Errorf("%s after stop: %q code %d (err %v), want CONTAINER_EXITED %d", specs[i].Name, state, code, err, wantCodes[i])
			}
			mustCrictl(t, c, "rm", id)
		}
		if out := mustCrictl(t, c, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("containers left after rm: %q", out)
		}
		if pids := c.ShimPids(rt.Handler); len(pids) != 1 {
			t.Errorf("%s: shim processes with only the sandbox left: %v, want 1", rt.Handler, pids)
		}
		mustCrictl(t, c, "stopp", podID)
		mustCrictl(t, c, "rmp", podID)
		if out := mustCrictl(t, c, "pods", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("pods left after rmp: %q", out)
		}
		if !eventually(10*time.Second, func() bool { return len(c.ShimPids(rt.Handler)) == 0 }) {
			t.Errorf("%s: shim still running 10s after rmp: %v", rt.Handler, c.ShimPids(rt.Handler))
		}
	})
}
