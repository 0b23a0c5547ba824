//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestStockSmoke checks the bed itself with the stock runc shim only.
func TestStockSmoke(t *testing.T) {
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		t.Run("ctr-run-exit-code", func(t *testing.T) { ctrRunExitCode(t, c, harness.RuncRuntime) })
		t.Run("crictl-lifecycle", func(t *testing.T) { crictlLifecycle(t, c, "runc") })
		t.Run("images", func(t *testing.T) { criImagesListed(t, c) })
		t.Run("no-leftovers", func(t *testing.T) { noLeftovers(t, c) })
	})
}

// TestExitCodes runs the basic exit code scenario over all runtimes.
func TestExitCodes(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		ctrRunExitCode(t, c, rt.Type)
		crictlLifecycle(t, c, rt.Handler)
	})
}

func ctrRunExitCode(t *testing.T, c *harness.Containerd, runtimeType string) {
	_, err := c.Ctr("run", "--rm", "--runtime", runtimeType, harness.BusyboxImage, "exit3", "sh", "-c", "exit 3")
	if code := harness.ExitCode(err); code != 3 {
		t.Fatalf("ctr run exit code = %d, want 3 (err %v)", code, err)
	}
}

func crictlLifecycle(t *testing.T, c *harness.Containerd, handler string) {
	pod := harness.Pod{Name: "smoke-" + handler}
	podID, err := c.RunPod(pod, handler)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateContainer(podID, pod, harness.Container{Name: "sleeper", Command: harness.Sh(ignoreTerm)})
	if err != nil {
		t.Fatal(err)
	}
	mustCrictl(t, c, "start", id)
	waitState(t, c, id, "CONTAINER_RUNNING")
	mustCrictl(t, c, "stop", "--timeout", "2", id)
	state, code, err := c.ContainerState(id)
	if err != nil || state != "CONTAINER_EXITED" || code != 137 {
		t.Fatalf("after stop: state %q code %d err %v, want CONTAINER_EXITED 137", state, code, err)
	}
	mustCrictl(t, c, "rm", id)
	mustCrictl(t, c, "stopp", podID)
	mustCrictl(t, c, "rmp", podID)
}

// ignoreTerm is a busybox script that ignores SIGTERM, so that a CRI stop
// with a timeout ends in SIGKILL (exit code 137).
const ignoreTerm = `trap "" TERM; while :; do sleep 1; done`

// noLeftovers checks that after removing everything no shim, mount or
// socket of c remains.
func noLeftovers(t *testing.T, c *harness.Containerd) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := c.Leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftovers: %s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func criImagesListed(t *testing.T, c *harness.Containerd) {
	out := mustCrictl(t, c, "images")
	for _, want := range []string{"docker.io/library/busybox", "registry.k8s.io/pause"} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl images lacks %s:\n%s", want, out)
		}
	}
}

func mustCrictl(t *testing.T, c *harness.Containerd, args ...string) string {
	t.Helper()
	out, err := c.Crictl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitDeadShimCleaned waits until containerd has finished cleaning up
// after a killed shim: it runs `shim delete` for each of the shim's tasks
// in the background, and until that returns a CRI call that deletes one of
// them fails with "ttrpc: closed" (the kubelet would retry it). The end of
// each is the TaskDelete event containerd publishes for it. `shim delete`
// takes as long as runc delete --force, which waits until the node's init
// reaps the orphaned pause process: on these machines it reaps about every
// 2 s.
func waitDeadShimCleaned(t *testing.T, events <-chan harness.Event, ids ...string) {
	t.Helper()
	pending := map[string]bool{}
	for _, id := range ids {
		pending[id] = true
	}
	for len(pending) > 0 {
		e := waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/delete" && pending[e.ContainerID] })
		delete(pending, e.ContainerID)
	}
}

// waitState polls the CRI state of container id until it is want (30 s).
func waitState(t *testing.T, c *harness.Containerd, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, _, err := c.ContainerState(id)
		if err == nil && state == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: state %q (err %v), want %s", id, state, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
