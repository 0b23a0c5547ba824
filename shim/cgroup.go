package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// applyShimCgroup moves the server into the ShimCgroup of the runtime
// options, which containerd 2.2 passes on stdin (2.4 passes its bootstrap
// parameters there instead; those do not parse as options and are left).
func applyShimCgroup(ctx context.Context, pid int) {
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice != 0 {
		return
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil || len(b) == 0 {
		return
	}
	var a anypb.Any
	if proto.Unmarshal(b, &a) != nil {
		return
	}
	v, err := typeurl.UnmarshalAny(&a)
	if err != nil {
		return
	}
	o, ok := v.(*options.Options)
	if !ok || o.ShimCgroup == "" {
		return
	}
	if err := joinCgroup(o.ShimCgroup, pid); err != nil {
		log.G(ctx).WithError(err).Warn("join shim cgroup")
	}
}

// v1Hierarchies are the cgroup v1 hierarchies a shim joins, each mounted at
// /sys/fs/cgroup/NAME.
var v1Hierarchies = []string{
	"systemd", "freezer", "pids", "net_cls", "net_prio", "perf_event", "cpuset",
	"cpu", "cpuacct", "memory", "blkio", "rdma", "devices", "hugetlb",
}

func joinCgroup(path string, pid int) error {
	var st unix.Statfs_t
	unified := unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	return joinCgroupAt(cgroupRoot, unified, path, pid)
}

// cgroupRoot is where cgroupfs is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// joinCgroupAt moves pid into the cgroup path: the unified one on cgroup v2;
// on v1 every hierarchy where the cgroup exists. A cgroup that exists
// nowhere is an error.
func joinCgroupAt(root string, unified bool, path string, pid int) error {
	procs := []byte(strconv.Itoa(pid))
	if unified {
		return os.WriteFile(filepath.Join(root, path, "cgroup.procs"), procs, 0)
	}
	joined := 0
	for _, h := range v1Hierarchies {
		dir := filepath.Join(root, h, path)
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), procs, 0); err != nil {
			return err
		}
		joined++
	}
	if joined == 0 {
		return fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
	}
	return nil
}
