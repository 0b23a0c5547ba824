package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestJoinCgroupAt(t *testing.T) {
	root := t.TempDir()
	for _, h := range []string{"memory", "cpu", "pids"} {
		if err := os.MkdirAll(filepath.Join(root, h, "shims", "pod1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "blkio"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := joinCgroupAt(root, false, "/shims/pod1", 4242); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"memory", "cpu", "pids"} {
		b, err := os.ReadFile(filepath.Join(root, h, "shims", "pod1", "cgroup.procs"))
		if err != nil || string(b) != "4242" {
			t.Errorf("%s: cgroup.procs = %q, %v", h, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "blkio", "shims")); err == nil {
		t.Error("created a cgroup in a hierarchy where it did not exist")
	}
	if err := joinCgroupAt(root, false, "/shims/none", 4242); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a cgroup that exists nowhere: %v", err)
	}

	if err := os.MkdirAll(filepath.Join(root, "v2", "pod2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := joinCgroupAt(filepath.Join(root, "v2"), true, "/pod2", 7); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "v2", "pod2", "cgroup.procs")); string(b) != "7" {
		t.Errorf("v2 cgroup.procs = %q", b)
	}
	if err := joinCgroupAt(filepath.Join(root, "v2"), true, "/none", 7); err == nil {
		t.Error("v2: joined a cgroup that does not exist")
	}
}

func marshalAny(t testing.TB, m proto.Message) []byte {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bootstrapStdin encodes containerd 2.4's BootstrapParams (its
// runtime/bootstrap/v1 API) with ext as the one extension's Any; 2.3
// writes the same message (api v1.11, same fields and numbers).
func bootstrapStdin(ext []byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "instance-id")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "k8s.io")
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	debug := int64(-4) // LOG_LEVEL_DEBUG
	b = protowire.AppendVarint(b, uint64(debug))
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, "/run/containerd/containerd.sock.ttrpc")
	if ext != nil {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendBytes(e, ext)
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	return protowire.AppendString(b, "/run/containerd/s")
}

func TestStartOptions(t *testing.T) {
	ctx := context.Background()
	runcOpts := marshalAny(t, &options.Options{ShimCgroup: "/shims/a"})
	criOpts := marshalAny(t, &runtimeoptions.Options{ConfigBody: []byte("ShimCgroup = '/shims/b'\nSystemdCgroup = true\n")})
	for _, c := range []struct {
		name  string
		stdin []byte
		want  string // ShimCgroup; "-" for no options
	}{
		{"2.2, runc options", runcOpts, "/shims/a"},
		{"2.2, CRI table", criOpts, "/shims/b"},
		{"2.4, runc options", bootstrapStdin(runcOpts), "/shims/a"},
		{"2.4, CRI table", bootstrapStdin(criOpts), "/shims/b"},
		{"2.4, no options", bootstrapStdin(nil), "-"},
		{"garbage", []byte("\xff\xff\xff"), "-"},
	} {
		o := startOptions(ctx, c.stdin)
		switch {
		case o == nil && c.want != "-":
			t.Errorf("%s: no options, want ShimCgroup %s", c.name, c.want)
		case o != nil && c.want == "-":
			t.Errorf("%s: options %v, want none", c.name, o)
		case o != nil && o.ShimCgroup != c.want:
			t.Errorf("%s: ShimCgroup %q, want %q", c.name, o.ShimCgroup, c.want)
		}
	}
}
