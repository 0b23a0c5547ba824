//go:build e2e

package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// CtrCommand returns an unstarted `ctr` command in namespace Namespace with
// containerd's environment, for callers that need its stdin or a terminal.
func (c *Containerd) CtrCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bins.ctr, c.ctrArgs(c.Namespace, args...)...)
	cmd.Env = c.env()
	return cmd
}

// Tasks dials containerd's gRPC socket and returns its Tasks service
// client; the connection closes when the test ends. Use NSContext for the
// namespace of each call.
func (c *Containerd) Tasks() (tasks.TasksClient, error) {
	conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { conn.Close() })
	return tasks.NewTasksClient(conn), nil
}

// NSContext returns ctx carrying namespace Namespace for containerd's gRPC API.
func (c *Containerd) NSContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", c.Namespace)
}

// CgroupV1Path returns the cgroup v1 path of pid in controller (e.g.
// "memory", "freezer") under /sys/fs/cgroup.
func CgroupV1Path(pid int, controller string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, name := range strings.Split(parts[1], ",") {
			if name == controller {
				return "/sys/fs/cgroup/" + parts[1] + parts[2], nil
			}
		}
	}
	return "", fmt.Errorf("pid %d: no cgroup v1 %s controller", pid, controller)
}

// CrictlCommand returns an unstarted crictl command against this
// containerd, for callers that run it in the background or need its
// stdin.
func (c *Containerd) CrictlCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bins.crictl, c.crictlArgs(args...)...)
	cmd.Env = c.env()
	return cmd
}
