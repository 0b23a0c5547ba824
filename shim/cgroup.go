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
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/watchshim/containerd-shim-watch-v2/proc"
	"github.com/watchshim/containerd-shim-watch-v2/proc/cgroup"
)

// applyShimCgroup moves the server into the ShimCgroup of the runtime
// options containerd passes on stdin at start.
func applyShimCgroup(ctx context.Context, pid int) {
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice != 0 {
		return
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil || len(b) == 0 {
		return
	}
	o := startOptions(ctx, b)
	if o == nil || o.ShimCgroup == "" {
		return
	}
	if err := joinCgroup(o.ShimCgroup, pid); err != nil {
		log.G(ctx).WithError(err).Warn("join shim cgroup")
	}
}

// startOptions finds the runtime options in what containerd writes to a
// starting shim's stdin: containerd 2.2 writes the options (a protobuf
// Any); 2.3 and 2.4 write their bootstrap parameters
// (containerd.runtime.bootstrap.v1.BootstrapParams), which carry them as an
// extension (field 8, an Extension whose field 1 is the Any). nil when
// there are none.
func startOptions(ctx context.Context, b []byte) *options.Options {
	decode := func(b []byte) (*options.Options, bool) {
		var a anypb.Any
		if proto.Unmarshal(b, &a) != nil {
			return nil, false
		}
		if _, err := typeurl.UnmarshalAny(&a); err != nil {
			return nil, false // not options (a bootstrap's instance id reads as a type URL)
		}
		o, err := proc.RuntimeOptions(&a)
		if err != nil {
			log.G(ctx).WithError(err).Warn("runtime options at start")
			return nil, false
		}
		return o, true
	}
	if o, ok := decode(b); ok {
		return o
	}
	for _, ext := range bytesFields(b, 8) {
		for _, a := range bytesFields(ext, 1) {
			if o, ok := decode(a); ok {
				return o
			}
		}
	}
	return nil
}

// bytesFields returns the values of the length-delimited fields num of the
// protobuf message b.
func bytesFields(b []byte, num protowire.Number) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return out
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return out
			}
			out = append(out, v)
			b = b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return out
		}
		b = b[l:]
	}
	return out
}

// v1Hierarchies are the cgroup v1 hierarchies a shim joins, each mounted at
// /sys/fs/cgroup/NAME.
var v1Hierarchies = []string{
	"systemd", "freezer", "pids", "net_cls", "net_prio", "perf_event", "cpuset",
	"cpu", "cpuacct", "memory", "blkio", "rdma", "devices", "hugetlb",
}

func joinCgroup(path string, pid int) error {
	return joinCgroupAt(cgroup.Root, cgroup.Unified(), path, pid)
}

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
