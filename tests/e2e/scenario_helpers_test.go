//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// scRunDetached runs `ctr run -d --runtime <rt> busybox id args...`.
func scRunDetached(t *testing.T, c *harness.Containerd, rt runtime, id string, args ...string) {
	t.Helper()
	run := append(append([]string{"run", "-d"}, rt.ctrRun()...), harness.BusyboxImage, id)
	mustCtr(t, c, append(run, args...)...)
}

// scTasks returns a Tasks client of c.
func scTasks(t *testing.T, c *harness.Containerd) tasks.TasksClient {
	t.Helper()
	tc, err := c.Tasks()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// scGet returns the init process of task id as containerd reports it.
func scGet(t *testing.T, c *harness.Containerd, tc tasks.TasksClient, id string) *tasktypes.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := tc.Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		t.Fatalf("get task %s: %v", id, err)
	}
	return resp.Process
}

// scWaitStatus polls task id until its status is want (30 s) and returns it.
func scWaitStatus(t *testing.T, c *harness.Containerd, tc tasks.TasksClient, id string, want tasktypes.Status) *tasktypes.Process {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := scGet(t, c, tc, id)
		if p.Status == want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: status %s, want %s", id, p.Status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scPids returns the pids of task id (init and execs).
func scPids(t *testing.T, c *harness.Containerd, tc tasks.TasksClient, id string) []uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := tc.ListPids(ctx, &tasks.ListPidsRequest{ContainerID: id})
	if err != nil {
		t.Fatalf("list pids of %s: %v", id, err)
	}
	var out []uint32
	for _, p := range resp.Processes {
		out = append(out, p.Pid)
	}
	return out
}

// scEventually polls cond every 100 ms until it holds or timeout passes.
func scEventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
