//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

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
		tc := scTasks(t, c)
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
		scRunDetached(t, c, rt, "b", "sleep", "600")
		initB := scWaitStatus(t, c, tc, "b", tasktypes.Status_RUNNING)
		firstDone := make(chan error, 1)
		go func() {
			_, err := c.CtrContext(ctx, "tasks", "exec", "--exec-id", "dup", "b", "sleep", "600")
			firstDone <- err
		}()
		if !scEventually(30*time.Second, func() bool { return len(scPids(t, c, tc, "b")) == 2 }) {
			t.Fatalf("first exec dup did not start: pids %v", scPids(t, c, tc, "b"))
		}
		before := scPids(t, c, tc, "b")
		_, err = c.Ctr("tasks", "exec", "--exec-id", "dup", "b", "sh", "-c", "exit 0")
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("ctr exec with duplicate id: %v, want an error mentioning already exists", err)
		}
		_, err = tc.Exec(scCtx(t, c), scExecRequest(t, "b", "dup", "true"))
		expect("Exec with duplicate id", err, codes.AlreadyExists)
		if after := scPids(t, c, tc, "b"); !sameUint32s(before, after) {
			t.Errorf("pids after duplicate exec: %v, before %v", after, before)
		}
		if p := scGet(t, c, tc, "b"); p.Status != tasktypes.Status_RUNNING || p.Pid != initB.Pid {
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
		scRunDetached(t, c, rt, "s", "sh", "-c", "exit 0")
		stopped := scWaitStatus(t, c, tc, "s", tasktypes.Status_STOPPED)
		unchanged := func(after string) {
			t.Helper()
			p := scGet(t, c, tc, "s")
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
		_, err = tc.Exec(scCtx(t, c), scExecRequest(t, "s", "late2", "true"))
		expect("Exec into stopped task", err, codes.FailedPrecondition)
		unchanged("Exec")

		_, err = c.Ctr("tasks", "kill", "s")
		if err == nil {
			t.Errorf("ctr kill of exited task succeeded")
		}
		t.Logf("%s: ctr kill of exited task: %v", rt.Handler, err)
		unchanged("ctr kill")
		_, err = tc.Kill(scCtx(t, c), &tasks.KillRequest{ContainerID: "s", Signal: 9})
		expect("Kill of exited task", err, codes.NotFound)
		unchanged("Kill")

		del, err := tc.Delete(scCtx(t, c), &tasks.DeleteTaskRequest{ContainerID: "s"})
		if err != nil {
			t.Fatalf("delete s: %v", err)
		}
		if del.ExitStatus != 0 || del.Pid != stopped.Pid {
			t.Errorf("delete s: %v, want exit status 0 pid %d", del, stopped.Pid)
		}
		_, err = tc.Delete(scCtx(t, c), &tasks.DeleteTaskRequest{ContainerID: "s"})
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

// scCtx returns a namespaced context for one gRPC call, ended with the test.
func scCtx(t *testing.T, c *harness.Containerd) context.Context {
	ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scExecRequest returns an Exec request without stdio running args.
func scExecRequest(t *testing.T, id, execID string, args ...string) *tasks.ExecProcessRequest {
	t.Helper()
	spec, err := json.Marshal(specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	return &tasks.ExecProcessRequest{ContainerID: id, ExecID: execID, Spec: &anypb.Any{
		TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec}}
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
