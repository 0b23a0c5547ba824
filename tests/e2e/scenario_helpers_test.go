//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// scenario is what the steps of one scenario test share: its test, its
// containerd, the runtime row under test and a Tasks client of that
// containerd. Build it once per test with newScenario; every step fails
// the test on an error of its own.
type scenario struct {
	t  *testing.T
	c  *harness.Containerd
	rt runtime
	tc tasks.TasksClient
}

// newScenario returns the scenario of t on c with runtime rt; its Tasks
// client closes when t ends.
func newScenario(t *testing.T, c *harness.Containerd, rt runtime) *scenario {
	t.Helper()
	tc, err := c.Tasks()
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, c: c, rt: rt, tc: tc}
}

// run runs `ctr run -d --runtime <rt> busybox id args...`.
func (s *scenario) run(id string, args ...string) {
	s.t.Helper()
	run := append(append([]string{"run", "-d"}, s.rt.ctrRun()...), harness.BusyboxImage, id)
	mustCtr(s.t, s.c, append(run, args...)...)
}

// ctx returns a namespaced context for one gRPC call (30 s), ended with
// the test.
func (s *scenario) ctx() context.Context {
	ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), 30*time.Second)
	s.t.Cleanup(cancel)
	return ctx
}

// get returns the init process of task id as containerd reports it.
func (s *scenario) get(id string) *tasktypes.Process {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := s.tc.Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		s.t.Fatalf("get task %s: %v", id, err)
	}
	return resp.Process
}

// waitStatus polls task id until its status is want (30 s) and returns it.
func (s *scenario) waitStatus(id string, want tasktypes.Status) *tasktypes.Process {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := s.get(id)
		if p.Status == want {
			return p
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("task %s: status %s, want %s", id, p.Status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pids returns the pids of task id (init and execs).
func (s *scenario) pids(id string) []uint32 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := s.tc.ListPids(ctx, &tasks.ListPidsRequest{ContainerID: id})
	if err != nil {
		s.t.Fatalf("list pids of %s: %v", id, err)
	}
	var out []uint32
	for _, p := range resp.Processes {
		out = append(out, p.Pid)
	}
	return out
}

// execRequest returns an Exec request of exec execID in task id, without
// stdio, running args.
func (s *scenario) execRequest(id, execID string, args ...string) *tasks.ExecProcessRequest {
	s.t.Helper()
	spec, err := json.Marshal(specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}})
	if err != nil {
		s.t.Fatal(err)
	}
	return &tasks.ExecProcessRequest{ContainerID: id, ExecID: execID, Spec: &anypb.Any{
		TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec}}
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
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
