//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestOOM: a container over its memory limit (cgroup v1 here) is OOM
// killed: TaskOOM comes before its TaskExit and CRI says OOMKilled.
func TestOOM(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		events := subscribe(t, c)
		pod := harness.Pod{Name: "oom"}
		podID, err := c.RunPod(pod, rt.Handler)
		if err != nil {
			t.Fatal(err)
		}
		id := createLimited(t, c, podID, pod, harness.Container{Name: "hog", Command: harness.Sh(`x=aaaaaaaaaaaaaaaa; while :; do x="$x$x"; done`)}, 32<<20)
		mustCrictl(t, c, "start", id)
		var topics []string
		e := waitEvent(t, events, func(e harness.Event) bool {
			if e.ContainerID == id && (e.Topic == "/tasks/oom" || e.Topic == "/tasks/exit") {
				topics = append(topics, e.Topic)
			}
			return e.ContainerID == id && e.Topic == "/tasks/exit"
		})
		st := waitExited(t, c, id)
		t.Logf("%s: events %v, exit %d, CRI reason %s", rt.Handler, topics, e.ExitStatus, st.Reason)
		if strings.Join(topics, ",") != "/tasks/oom,/tasks/exit" {
			t.Errorf("%s: events %v, want TaskOOM then TaskExit", rt.Handler, topics)
		}
		if st.Reason != "OOMKilled" || st.ExitCode != 137 {
			t.Errorf("%s: CRI %+v, want exit 137 OOMKilled", rt.Handler, st)
		}
	})
}

// createLimited creates a CRI container with a memory limit in bytes.
func createLimited(t *testing.T, c *harness.Containerd, podID string, pod harness.Pod, ct harness.Container, limit int64) string {
	t.Helper()
	cfg := c.ContainerConfig(ct)
	cfg["linux"] = map[string]any{"resources": map[string]any{"memory_limit_in_bytes": limit}}
	ctPath, err := c.WriteJSON("ctr-"+ct.Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	podPath, err := c.WriteJSON("pod-"+pod.Name, c.PodConfig(pod))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Crictl("create", podID, ctPath, podPath)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return strings.TrimSpace(out)
}
