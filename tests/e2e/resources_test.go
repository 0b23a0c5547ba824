//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestScenarioResources: Stats returns cgroup v1 metrics, Update changes the
// memory limit in the container's cgroup, Pause/Resume freeze and thaw it
// with their events and states.
func TestScenarioResources(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		events := subscribe(t, c)
		s := newScenario(t, c, rt)
		s.run("r", "sleep", "600")
		p := s.waitStatus("r", tasktypes.Status_RUNNING)
		memDir, err := harness.CgroupV1Path(int(p.Pid), "memory")
		if err != nil {
			t.Fatal(err)
		}
		freezerDir, err := harness.CgroupV1Path(int(p.Pid), "freezer")
		if err != nil {
			t.Fatal(err)
		}

		m := s.metrics("r")
		if m.Memory == nil || m.Memory.Usage == nil || m.Memory.Usage.Usage == 0 {
			t.Errorf("metrics lack memory usage: %v", m.Memory)
		}
		if m.Pids == nil || m.Pids.Current < 1 {
			t.Errorf("metrics lack pids: %v", m.Pids)
		}
		if m.CPU == nil || m.CPU.Usage == nil {
			t.Errorf("metrics lack cpu usage: %v", m.CPU)
		}

		// ctr has no task update: send containerd's Update as ctr's library would.
		s.updateMemory("r", 67108864)
		if got := readTrim(t, filepath.Join(memDir, "memory.limit_in_bytes")); got != "67108864" {
			t.Errorf("memory.limit_in_bytes after update = %s, want 67108864", got)
		}
		if m := s.metrics("r"); m.Memory == nil || m.Memory.Usage == nil || m.Memory.Usage.Limit != 67108864 {
			t.Errorf("metrics memory limit after update: %v, want 67108864", m.Memory)
		}

		mustCtr(t, c, "tasks", "pause", "r")
		waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/paused" && e.ContainerID == "r" })
		if got := s.get("r"); got.Status != tasktypes.Status_PAUSED {
			t.Errorf("status after pause %s, want PAUSED", got.Status)
		}
		if got := readTrim(t, filepath.Join(freezerDir, "freezer.state")); got != "FROZEN" {
			t.Errorf("freezer.state after pause = %s, want FROZEN", got)
		}
		if out := mustCtr(t, c, "tasks", "list"); !strings.Contains(out, "PAUSED") {
			t.Errorf("ctr tasks list after pause:\n%s", out)
		}

		mustCtr(t, c, "tasks", "resume", "r")
		waitEvent(t, events, func(e harness.Event) bool { return e.Topic == "/tasks/resumed" && e.ContainerID == "r" })
		if got := s.get("r"); got.Status != tasktypes.Status_RUNNING || got.Pid != p.Pid {
			t.Errorf("after resume: %s pid %d, want RUNNING pid %d", got.Status, got.Pid, p.Pid)
		}
		if got := readTrim(t, filepath.Join(freezerDir, "freezer.state")); got != "THAWED" {
			t.Errorf("freezer.state after resume = %s, want THAWED", got)
		}
		// The container still works after the round trip.
		if _, err := c.Ctr("tasks", "exec", "--exec-id", "after", "r", "true"); err != nil {
			t.Errorf("exec after resume: %v", err)
		}
	})
}

// metrics returns the cgroup v1 metrics of task id.
func (s *scenario) metrics(id string) *stats.Metrics {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := s.tc.Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil {
		t.Fatalf("metrics %s: %v", id, err)
	}
	if len(resp.Metrics) != 1 || resp.Metrics[0].Data == nil {
		t.Fatalf("metrics %s: %v, want one with data", id, resp.Metrics)
	}
	data := resp.Metrics[0].Data
	if !strings.HasSuffix(data.TypeUrl, "io.containerd.cgroups.v1.Metrics") {
		t.Fatalf("metrics type %q, want io.containerd.cgroups.v1.Metrics", data.TypeUrl)
	}
	var m stats.Metrics
	if err := proto.Unmarshal(data.Value, &m); err != nil {
		t.Fatalf("decode metrics: %v", err)
	}
	return &m
}

// updateMemory sets the memory limit of task id through containerd's
// Update (resources as JSON LinuxResources, as the client sends them).
func (s *scenario) updateMemory(id string, limit int64) {
	t := s.t
	t.Helper()
	res, err := json.Marshal(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), 30*time.Second)
	defer cancel()
	_, err = s.tc.Update(ctx, &tasks.UpdateTaskRequest{ContainerID: id, Resources: &anypb.Any{
		TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: res}})
	if err != nil {
		t.Fatalf("update %s memory limit: %v", id, err)
	}
}

// readTrim returns the content of path without surrounding space.
func readTrim(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
