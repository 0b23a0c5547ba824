package proc

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// cgroupRoot is where cgroupfs is mounted; tests point it elsewhere.
var cgroupRoot = "/sys/fs/cgroup"

// cgroup is a container's cgroup, v1 or v2, loaded from its init's pid.
type cgroup struct {
	v1     cgroup1.Cgroup
	v2     *cgroup2.Manager
	memDir string
}

func loadCgroup(pid int) (*cgroup, error) {
	legacy, unified, err := cgroups.ParseCgroupFileUnified(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(unified)
		if err != nil {
			return nil, err
		}
		return &cgroup{v2: m, memDir: filepath.Join(cgroupRoot, unified)}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return nil, err
	}
	return &cgroup{v1: cg, memDir: filepath.Join(cgroupRoot, "memory", legacy["memory"])}, nil
}

// stats returns the cgroup's metrics: *v1.Metrics or *v2.Metrics.
func (g *cgroup) stats() (any, error) {
	if g.v2 != nil {
		return g.v2.Stat()
	}
	return g.v1.Stat(cgroup1.IgnoreNotExist)
}

// oomKilled reads the memory cgroup's OOM kill counter.
func (g *cgroup) oomKilled() bool { return exitmon.OOMKilled(g.memDir) }
