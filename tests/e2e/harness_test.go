//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestHarnessEvents checks that Events reports a task exit with its status.
// It runs the watch shim: the stock one sometimes exits before it has sent
// the TaskExit of a `ctr run --rm` (seen once in a make e2e run: no
// /tasks/exit within 30 s, "shim disconnected" 200 ms after the start),
// which is not what this test is about.
func TestHarnessEvents(t *testing.T) {
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		events := subscribe(t, c)
		_, err := c.Ctr("run", "--rm", "--runtime", harness.WatchRuntime, harness.BusyboxImage, "ev", "sh", "-c", "exit 3")
		if harness.ExitCode(err) != 3 {
			t.Fatalf("ctr run: %v", err)
		}
		e := waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/exit" && e.ContainerID == "ev" })
		if e.ExitStatus != 3 || e.Pid == 0 || e.ExitedAt.IsZero() || e.Namespace != "k8s.io" {
			t.Fatalf("exit event %+v, want status 3 with pid and exited_at in k8s.io", e)
		}
	})
}

// TestHarnessRestart checks that Stop leaves shims and containers running
// and that StartAgain reconnects to them.
func TestHarnessRestart(t *testing.T) {
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		mustCtr(t, c, "run", "-d", "--runtime", harness.RuncRuntime, harness.BusyboxImage, "long", "sleep", "600")
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if pids := c.ShimPids("runc"); len(pids) != 1 {
			t.Fatalf("ShimPids(runc) with containerd down = %v, want one shim", pids)
		}
		if err := c.StartAgain(); err != nil {
			t.Fatal(err)
		}
		out := mustCtr(t, c, "tasks", "list")
		if !strings.Contains(out, "RUNNING") {
			t.Fatalf("after restart task long not running:\n%s", out)
		}
	})
}

// TestHarnessCleanup leaves a ctr container and a CRI pod running and
// checks that Cleanup leaves nothing behind.
func TestHarnessCleanup(t *testing.T) {
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		startLeftovers(t, c)
		if problems := c.Cleanup(); len(problems) > 0 {
			t.Fatalf("cleanup left: %v", problems)
		}
		if pids := c.ShimPids("runc"); len(pids) > 0 {
			t.Fatalf("shims left: %v", pids)
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Fatalf("%s still exists: %v", c.Dir, err)
		}
	})
}

// TestFailOnPurpose leaves containers running and then, by
// WATCH_E2E_FAIL_ON_PURPOSE, fails ("fail"), panics ("panic") or hangs
// ("hang", to be killed), to check by hand that nothing is left behind.
func TestFailOnPurpose(t *testing.T) {
	mode := os.Getenv("WATCH_E2E_FAIL_ON_PURPOSE")
	if mode == "" {
		t.Skip("skipping: set WATCH_E2E_FAIL_ON_PURPOSE=fail|panic|hang")
	}
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		startLeftovers(t, c)
		switch mode {
		case "panic":
			panic("panicking on purpose in " + c.Dir)
		case "hang":
			t.Logf("hanging in %s", c.Dir)
			select {}
		}
		t.Fatalf("failing on purpose with containers running in %s", c.Dir)
	})
}

// startLeftovers starts a detached ctr container and a CRI pod with a
// running container.
func startLeftovers(t *testing.T, c *harness.Containerd) {
	t.Helper()
	mustCtr(t, c, "run", "-d", "--runtime", harness.RuncRuntime, harness.BusyboxImage, "stay", "sleep", "600")
	pod := harness.Pod{Name: "stay"}
	podID, err := c.RunPod(pod, "runc")
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateContainer(podID, pod, harness.Container{Name: "stay", Command: harness.Sh("sleep 600")})
	if err != nil {
		t.Fatal(err)
	}
	mustCrictl(t, c, "start", id)
}

func mustCtr(t *testing.T, c *harness.Containerd, args ...string) string {
	t.Helper()
	out, err := c.Ctr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEvent returns the first event matching match within 30 s.
func waitEvent(t *testing.T, events <-chan harness.Event, match func(harness.Event) bool) harness.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream closed")
			}
			if match(e) {
				return e
			}
		case <-timeout:
			t.Fatal("no matching event within 30s")
		}
	}
}

// TestHarnessFifoLeftovers checks that the leftover checks catch stdio
// fifos: an exec whose ctr was killed leaves its fifo dir in the private
// FifoDir, which Cleanup reports; a ctr call that bypasses the private dir
// (a global flag ahead of run hides the subcommand from the harness)
// leaves one in ctr's shared default dir, which Leftovers reports when no
// other containerd runs on the machine.
func TestHarnessFifoLeftovers(t *testing.T) {
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		s := newScenario(t, c, runtimes[0])
		s.run("x", "sleep", "600")
		s.waitStatus("x", tasktypes.Status_RUNNING)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		exec := c.CtrCommand(ctx, "tasks", "exec", "--exec-id", "killed", "x", "sleep", "600")
		if err := exec.Start(); err != nil {
			t.Fatal(err)
		}
		if !eventually(30*time.Second, func() bool { return len(s.pids("x")) == 2 }) {
			t.Fatalf("exec killed did not start: pids %v", s.pids("x"))
		}
		exec.Process.Kill()
		exec.Wait()

		before := sharedFifoDirs()
		mustCtr(t, c, "--debug", "run", "-d", "--runtime", harness.RuncRuntime, harness.BusyboxImage, "shared", "true")
		s.waitStatus("shared", tasktypes.Status_STOPPED)
		if _, err := s.tc.Delete(s.ctx(), &tasks.DeleteTaskRequest{ContainerID: "shared"}); err != nil {
			t.Fatal(err)
		}
		var made []string
		for dir := range sharedFifoDirs() {
			if !before[dir] {
				made = append(made, dir)
				defer os.RemoveAll(dir)
			}
		}
		if len(made) != 1 {
			t.Fatalf("fifo dirs ctr made in /run/containerd/fifo: %q, want one", made)
		}
		shared := matching(c.Leftovers(), "shared fifo dir "+made[0])
		switch {
		case !c.SharedFifosAttributable():
			t.Logf("another containerd runs: Leftovers cannot tell %s is ours", made[0])
		case len(shared) != 1:
			t.Errorf("Leftovers reports %q for the fifo dir ctr left in /run/containerd/fifo, want %s", shared, made[0])
		}
		problems := c.Cleanup()
		if exec := matching(problems, "exec fifo dir "+c.FifoDir()+"/exec/"); len(exec) != 1 {
			t.Errorf("Cleanup reports %q for the fifo dir of a killed ctr exec, want one (all: %q)", exec, problems)
		}
	})
}

// sharedFifoDirs returns the directories in ctr's default fifo directory.
func sharedFifoDirs() map[string]bool {
	entries, _ := os.ReadDir("/run/containerd/fifo")
	out := map[string]bool{}
	for _, e := range entries {
		out[filepath.Join("/run/containerd/fifo", e.Name())] = true
	}
	return out
}

// matching returns the items of list that start with prefix.
func matching(list []string, prefix string) []string {
	var out []string
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}
