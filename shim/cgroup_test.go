package shim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
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
