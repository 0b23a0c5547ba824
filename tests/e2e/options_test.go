//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestCRIRuntimeOptions: CRI gives a runtime type other than runc's its
// options table from config.toml as TOML, wrapped in containerd's generic
// runtime options. The shim reads runc's options from it, as users of the
// stock shim write them: BinaryName for every runc call of a pod, and
// ShimCgroup at start, which containerd 2.2 passes on the shim's stdin and
// 2.4 inside its bootstrap parameters.
func TestCRIRuntimeOptions(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range harness.Versions() {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "runc-calls")
			wrapper := filepath.Join(dir, "runc-wrapper")
			script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", calls, filepath.Join(bin, "runc"))
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			// Cleanups run last first: the cgroup goes after containerd
			// and its shims.
			cg := makeShimCgroup(t)
			c := harness.Start(t, harness.Options{Version: version,
				WatchOptions: fmt.Sprintf("BinaryName = %q\nShimCgroup = %q\nSystemdCgroup = false\n", wrapper, cg.path)})

			pod := harness.Pod{Name: "opts"}
			podID, err := c.RunPod(pod, "watch")
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.CreateContainer(podID, pod, harness.Container{Name: "c", Command: harness.Sh("sleep 600")})
			if err != nil {
				t.Fatal(err)
			}
			mustCrictl(t, c, "start", id)

			b, _ := os.ReadFile(calls)
			if n := strings.Count(string(b), " create "); n < 2 {
				t.Errorf("runc wrapper saw %d creates (pause and container), want 2; calls:\n%s", n, b)
			}
			shims := c.ShimPids(harness.WatchRuntime)
			if len(shims) != 1 {
				t.Fatalf("watch shims %v, want one", shims)
			}
			if !cg.has(shims[0]) {
				t.Errorf("shim %d is not in ShimCgroup %s: %s", shims[0], cg.path, cg.procs())
			}
			mustCrictl(t, c, "stopp", podID)
			mustCrictl(t, c, "rmp", podID)
		})
	}
}

// shimCgroup is a cgroup made for a test: in the unified hierarchy, or on
// cgroup v1 in the pids and memory hierarchies.
type shimCgroup struct {
	path string   // as ShimCgroup names it
	dirs []string // where it is in cgroupfs
}

func makeShimCgroup(t *testing.T) *shimCgroup {
	t.Helper()
	cg := &shimCgroup{path: "/watch-e2e-shims-" + strconv.Itoa(os.Getpid())}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg.dirs = []string{"/sys/fs/cgroup" + cg.path}
	} else {
		cg.dirs = []string{"/sys/fs/cgroup/pids" + cg.path, "/sys/fs/cgroup/memory" + cg.path}
	}
	for _, d := range cg.dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			t.Skipf("cannot make a cgroup: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	return cg
}

func (cg *shimCgroup) procs() string {
	b, _ := os.ReadFile(filepath.Join(cg.dirs[0], "cgroup.procs"))
	return strings.TrimSpace(string(b))
}

func (cg *shimCgroup) has(pid int) bool {
	for _, d := range cg.dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if !strings.Contains("\n"+string(b), "\n"+strconv.Itoa(pid)+"\n") {
			return false
		}
	}
	return true
}
