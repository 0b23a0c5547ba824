package proc

import (
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	"google.golang.org/protobuf/proto"
)

// statsV2 writes io.containerd.cgroups.v2.Metrics for the unified cgroup
// dir to p. For now through cgroups/v3; to be read natively like v1.
func statsV2(_ *statReader, dir string, p *pbuf) error {
	m, err := cgroup2.Load(strings.TrimPrefix(dir, cgroupRoot))
	if err != nil {
		return err
	}
	st, err := m.Stat()
	if err != nil {
		return err
	}
	p.b, err = proto.MarshalOptions{}.MarshalAppend(p.b, st)
	return err
}
