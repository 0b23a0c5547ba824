package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

// Root is where cgroupfs is mounted.
const Root = "/sys/fs/cgroup"

// cgroupRoot is Root; tests point it elsewhere.
var cgroupRoot = Root

// Group is a container's cgroup, v1 or v2, found from its init's pid.
// Its methods are safe for concurrent use.
type Group struct {
	v2     string // the unified directory, or "" on cgroup v1
	v1     v1Dirs
	memDir string // where memory.events or memory.oom_control live

	mu  sync.Mutex // guards the buffers of stats
	r   statReader
	out pbuf
}

// Unified reports whether cgroupfs is a cgroup v2 mount (not v1 or hybrid).
func Unified() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Load finds the cgroup of the process pid: its unified directory on
// cgroup v2, else the directory of each v1 controller that has statistics.
func Load(pid int) (*Group, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procRoot, pid))
	if err != nil {
		return nil, err
	}
	paths := parseProcCgroup(b)
	if Unified() {
		p, ok := paths[""]
		if !ok {
			return nil, fmt.Errorf("pid %d: no cgroup v2 entry", pid)
		}
		dir := cgroupRoot + p
		return &Group{v2: dir, memDir: dir}, nil
	}
	g := &Group{}
	for _, c := range []struct {
		name string
		dir  *string
	}{
		{"memory", &g.v1.memory}, {"cpu", &g.v1.cpu}, {"cpuacct", &g.v1.cpuacct},
		{"blkio", &g.v1.blkio}, {"pids", &g.v1.pids}, {"hugetlb", &g.v1.hugetlb},
		{"rdma", &g.v1.rdma},
	} {
		p, ok := paths[c.name]
		if !ok {
			continue
		}
		dir := cgroupRoot + "/" + c.name + p
		if _, err := os.Stat(dir); err == nil {
			*c.dir = dir
		}
	}
	if g.v1 == (v1Dirs{}) {
		return nil, fmt.Errorf("pid %d: no cgroup v1 controller with statistics", pid)
	}
	g.memDir = g.v1.memory
	return g, nil
}

// parseProcCgroup maps each controller of /proc/PID/cgroup to its path;
// the cgroup v2 entry is under "".
func parseProcCgroup(b []byte) map[string]string {
	paths := make(map[string]string)
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		_, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		ctrls, path, ok := bytes.Cut(rest, []byte(":"))
		if !ok {
			continue
		}
		if len(ctrls) == 0 {
			paths[""] = string(path)
			continue
		}
		for _, c := range bytes.Split(ctrls, []byte(",")) {
			paths[string(c)] = string(path)
		}
	}
	return paths
}

// Stats returns the cgroup's metrics: io.containerd.cgroups.v1.Metrics or
// v2.Metrics, encoded.
func (g *Group) Stats() (*anypb.Any, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.out.b = g.out.b[:0]
	url := metricsV1URL
	var err error
	if g.v2 != "" {
		url = metricsV2URL
		err = statsV2(&g.r, g.v2, &g.out)
	} else {
		err = statsV1(&g.r, &g.v1, &g.out)
	}
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: url, Value: bytes.Clone(g.out.b)}, nil
}

// OOMKilled reports whether the kernel's OOM killer has killed a process in
// the cgroup, from the memory controller's oom_kill counter.
func (g *Group) OOMKilled() bool { return g.memDir != "" && oomKilledAt(g.memDir) }
