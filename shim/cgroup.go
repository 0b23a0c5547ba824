package shim

import (
	"context"
	"io"
	"os"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
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

func joinCgroup(path string, pid int) error {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return err
		}
		return m.AddProc(uint64(pid))
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return err
	}
	return cg.AddProc(uint64(pid))
}
