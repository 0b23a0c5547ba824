//go:build e2e

package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestContainerTimerSlack: the watch shim runs its own threads with a
// coarse timer slack (shim/slack.go), which a fork passes on; a container's
// process and an exec must still begin with containerd's slack, as they do
// under the stock runtime, and the shim's threads must have the coarse one.
func TestContainerTimerSlack(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	c := harness.Start(t, harness.Options{})
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid()) + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(b))
	const script = "cat /proc/self/timerslack_ns; sleep 600"
	for _, rt := range runtimes {
		pod := harness.Pod{Name: "slack-" + rt.Handler}
		podID, err := c.RunPod(pod, rt.Handler)
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.CreateContainer(podID, pod, harness.Container{Name: "c", Command: harness.Sh(script)})
		if err != nil {
			t.Fatal(err)
		}
		mustCrictl(t, c, "start", id)
		exec := strings.TrimSpace(mustCrictl(t, c, "exec", id, "cat", "/proc/self/timerslack_ns"))
		logs := strings.TrimSpace(mustCrictl(t, c, "logs", id))
		t.Logf("%s: containerd %s, container %s, exec %s", rt.Handler, want, logs, exec)
		if logs != want || exec != want {
			t.Errorf("%s: container slack %q, exec %q; want containerd's %q", rt.Handler, logs, exec, want)
		}
		if rt.Handler != "watch" {
			continue
		}
		pids := c.ShimPids(rt.Handler)
		if len(pids) != 1 {
			t.Fatalf("watch shims: %v, want one", pids)
		}
		tids, _ := os.ReadDir("/proc/" + strconv.Itoa(pids[0]) + "/task")
		for _, tid := range tids {
			b, err := os.ReadFile("/proc/" + tid.Name() + "/timerslack_ns")
			if err == nil && strings.TrimSpace(string(b)) != "1000000" {
				t.Errorf("shim thread %s: slack %s, want 1000000", tid.Name(), strings.TrimSpace(string(b)))
			}
		}
	}
}
