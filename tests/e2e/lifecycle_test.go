//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestScenarioRunExitCode: `ctr run --rm` returns the container's exit
// code and removes the container.
func TestScenarioRunExitCode(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		_, err := c.Ctr("run", "--rm", "--runtime", rt.Type, harness.BusyboxImage, "x", "sh", "-c", "exit 3")
		if code := harness.ExitCode(err); code != 3 {
			t.Fatalf("ctr run exit code = %d, want 3 (err %v)", code, err)
		}
		if out := mustCtr(t, c, "containers", "list", "--quiet"); strings.TrimSpace(out) != "" {
			t.Fatalf("containers left after ctr run --rm: %q", out)
		}
	})
}

// TestScenarioKillFromOutside: a container SIGKILLed from outside exits
// with 137, reported by the exit event, Get and ctr task delete.
func TestScenarioKillFromOutside(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		events := subscribe(t, c)
		s := newScenario(t, c, rt)
		s.run("k", "sleep", "600")
		running := s.waitStatus("k", tasktypes.Status_RUNNING)
		mustCtr(t, c, "tasks", "kill", "--signal", "SIGKILL", "k")
		e := waitEvent(t, events, func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.ContainerID == "k" && (e.ExecID == "" || e.ExecID == "k")
		})
		if e.ExitStatus != 137 || e.Pid != running.Pid || e.ExitedAt.IsZero() {
			t.Errorf("exit event %+v, want status 137 pid %d with exited_at", e, running.Pid)
		}
		p := s.waitStatus("k", tasktypes.Status_STOPPED)
		if p.ExitStatus != 137 {
			t.Errorf("stopped task exit status %d, want 137", p.ExitStatus)
		}
		out := mustCtr(t, c, "tasks", "list")
		if !strings.Contains(out, "STOPPED") {
			t.Errorf("ctr tasks list after kill:\n%s", out)
		}
		dctx, dcancel := context.WithTimeout(c.NSContext(context.Background()), 30*time.Second)
		defer dcancel()
		del, err := s.tc.Delete(dctx, &tasks.DeleteTaskRequest{ContainerID: "k"})
		if err != nil {
			t.Fatalf("delete task k: %v", err)
		}
		if del.ExitStatus != 137 || del.Pid != running.Pid || del.ExitedAt == nil {
			t.Errorf("delete response %v, want exit status 137 pid %d with exited_at", del, running.Pid)
		}
		if ok := eventually(10*time.Second, func() bool { return len(c.ShimPids(rt.Handler)) == 0 }); !ok {
			t.Logf("%s: shim still running after task delete (pids %v)", rt.Handler, c.ShimPids(rt.Handler))
		}
		mustCtr(t, c, "containers", "delete", "k")
	})
}
