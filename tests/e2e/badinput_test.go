//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestScenarioBadInput: a duplicate exec id, an exec into a stopped task, a
// kill of an exited task and a second delete fail with the contract's
// codes and clear messages, and change nothing.
func TestScenarioBadInput(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := c.Events(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := newScenario(t, c, rt)
		watch := rt.Handler == "watch"
		// expect asserts code for watch and logs a difference for stock.
		expect := func(what string, err error, want codes.Code) {
			t.Helper()
			got := status.Code(err)
			switch {
			case got == want:
			case watch:
				t.Errorf("%s: code %s (%v), want %s", what, got, err, want)
			default:
				t.Logf("stock differs: %s: code %s (%v), contract says %s", what, got, err, want)
			}
		}

		// Duplicate exec id while the first exec runs.
		s.run("b", "sleep", "600")
		initB := s.waitStatus("b", tasktypes.Status_RUNNING)
		firstDone := make(chan error, 1)
		go func() {
			_, err := c.CtrContext(ctx, "tasks", "exec", "--exec-id", "dup", "b", "sleep", "600")
			firstDone <- err
		}()
		if !eventually(30*time.Second, func() bool { return len(s.pids("b")) == 2 }) {
			t.Fatalf("first exec dup did not start: pids %v", s.pids("b"))
		}
		before := s.pids("b")
		_, err = c.Ctr("tasks", "exec", "--exec-id", "dup", "b", "sh", "-c", "exit 0")
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("ctr exec with duplicate id: %v, want an error mentioning already exists", err)
		}
		_, err = s.tc.Exec(s.ctx(), s.execRequest("b", "dup", "true"))
		expect("Exec with duplicate id", err, codes.AlreadyExists)
		if after := s.pids("b"); !sameUint32s(before, after) {
			t.Errorf("pids after duplicate exec: %v, before %v", after, before)
		}
		if p := s.get("b"); p.Status != tasktypes.Status_RUNNING || p.Pid != initB.Pid {
			t.Errorf("init after duplicate exec: %s pid %d, want RUNNING pid %d", p.Status, p.Pid, initB.Pid)
		}
		select {
		case err := <-firstDone:
			t.Fatalf("first exec dup ended after the duplicate: %v", err)
		default:
		}
		mustCtr(t, c, "tasks", "kill", "--exec-id", "dup", "--signal", "SIGKILL", "b")
		select {
		case err := <-firstDone:
			if code := harness.ExitCode(err); code != 137 {
				t.Errorf("first exec dup after SIGKILL: code %d (err %v), want 137", code, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("first exec dup still running 30s after SIGKILL")
		}

		// Exec into, and kill of, a task that exited but is not deleted.
		s.run("s", "sh", "-c", "exit 0")
		stopped := s.waitStatus("s", tasktypes.Status_STOPPED)
		unchanged := func(after string) {
			t.Helper()
			p := s.get("s")
			if p.Status != tasktypes.Status_STOPPED || p.Pid != stopped.Pid || p.ExitStatus != 0 ||
				!proto.Equal(p.ExitedAt, stopped.ExitedAt) {
				t.Errorf("task s after %s: %v, want unchanged %v", after, p, stopped)
			}
		}
		_, err = c.Ctr("tasks", "exec", "--exec-id", "late", "s", "true")
		if err == nil {
			t.Errorf("ctr exec into stopped task succeeded")
		}
		t.Logf("%s: ctr exec into stopped task: %v", rt.Handler, err)
		unchanged("ctr exec")
		_, err = s.tc.Exec(s.ctx(), s.execRequest("s", "late2", "true"))
		expect("Exec into stopped task", err, codes.FailedPrecondition)
		unchanged("Exec")

		_, err = c.Ctr("tasks", "kill", "s")
		if err == nil {
			t.Errorf("ctr kill of exited task succeeded")
		}
		t.Logf("%s: ctr kill of exited task: %v", rt.Handler, err)
		unchanged("ctr kill")
		_, err = s.tc.Kill(s.ctx(), &tasks.KillRequest{ContainerID: "s", Signal: 9})
		expect("Kill of exited task", err, codes.NotFound)
		unchanged("Kill")

		del, err := s.tc.Delete(s.ctx(), &tasks.DeleteTaskRequest{ContainerID: "s"})
		if err != nil {
			t.Fatalf("delete s: %v", err)
		}
		if del.ExitStatus != 0 || del.Pid != stopped.Pid {
			t.Errorf("delete s: %v, want exit status 0 pid %d", del, stopped.Pid)
		}
		_, err = s.tc.Delete(s.ctx(), &tasks.DeleteTaskRequest{ContainerID: "s"})
		expect("second Delete", err, codes.NotFound)

		// Nothing else happened: one exec-added for dup, none for the
		// rejected execs, one exit for s.
		counts := map[string]int{}
		timeout := time.After(2 * time.Second)
	drain:
		for {
			select {
			case e := <-events:
				counts[e.Topic+" "+e.ContainerID+" "+e.ExecID]++
			case <-timeout:
				break drain
			}
		}
		for key, want := range map[string]int{
			"/tasks/exec-added b dup": 1, "/tasks/exec-added s late": 0, "/tasks/exec-added s late2": 0,
			"/tasks/exit s ": 1,
		} {
			if counts[key] != want {
				t.Errorf("events %q: %d, want %d (all: %v)", key, counts[key], want, counts)
			}
		}
		if n := counts["/tasks/delete s "]; n != 1 {
			if watch {
				t.Errorf("events /tasks/delete s: %d, want 1 (all: %v)", n, counts)
			} else {
				t.Logf("stock differs: /tasks/delete s events within 2s of Delete: %d, want 1", n)
			}
		}
	})
}

func sameUint32s(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[uint32]int{}
	for _, v := range a {
		seen[v]++
	}
	for _, v := range b {
		if seen[v] == 0 {
			return false
		}
		seen[v]--
	}
	return true
}
