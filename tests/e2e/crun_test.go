//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestCrun runs the exit scenarios with crun (Debian's package) as the OCI
// runtime of both shims, through their options' BinaryName, as many nodes
// run them: CRI reads it from config.toml, ctr gets it with --runc-binary
// (runc) or --runtime-config-path (watch). BinaryName is crun-compat
// (harness.CrunCompat): Debian 12's crun 1.8.1 runs no container of
// containerd 2.x by itself. It runs on the newest containerd of Versions()
// only. Skipped when crun is not installed.
func TestCrun(t *testing.T) {
	crun, err := harness.CrunCompat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if crun == "" {
		t.Skip("skipping: crun not installed (scripts/install-deps.sh installs Debian's)")
	}
	scenarios := []struct {
		name string
		fn   func(t *testing.T, c *harness.Containerd, rt runtime)
	}{
		{"UsesCrun", usesCrun},
		{"ExitWhileContainerdDown", func(t *testing.T, c *harness.Containerd, rt runtime) {
			exitWhileDown(t, c, rt, 5*time.Second)
		}},
		{"ShimKilledAfterExit", shimKilledAfterExit},
		{"ExecExitCodes", execExitCodes},
	}
	version := harness.NewestVersion()
	for _, sc := range scenarios {
		for _, base := range runtimes {
			t.Run(sc.name+"/"+version+"/"+base.Handler, func(t *testing.T) {
				if base.Handler == "watch" {
					harness.SkipWithoutWatchShim(t)
				}
				c := harness.Start(t, harness.Options{Version: version, OCIRuntime: crun})
				sc.fn(t, c, crunRow(t, c, base, crun))
			})
		}
	}
}

// crunRow returns base with the ctr flags that make its shim run crun.
func crunRow(t *testing.T, c *harness.Containerd, base runtime, crun string) runtime {
	t.Helper()
	rt := base
	if rt.Type == harness.RuncRuntime {
		rt.CtrOpts = []string{"--runc-binary", crun}
		return rt
	}
	path := filepath.Join(c.Dir, "crun-options.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("BinaryName = %q\n", crun)), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.CtrOpts = []string{"--runtime-config-path", path}
	return rt
}

// usesCrun checks that the crun rows really run crun: a CRI pod, its
// container and a ctr container are in crun's state, not runc's.
func usesCrun(t *testing.T, c *harness.Containerd, rt runtime) {
	pod := harness.Pod{Name: "crun"}
	podID, err := c.RunPod(pod, rt.Handler)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateContainer(podID, pod, harness.Container{Name: "c", Command: harness.Sh("sleep 600")})
	if err != nil {
		t.Fatal(err)
	}
	mustCrictl(t, c, "start", id)
	newScenario(t, c, rt).run("ctr-crun", "sleep", "600")
	for what, id := range map[string]string{"pod sandbox": podID, "CRI container": id, "ctr container": "ctr-crun"} {
		if got := c.OCIRuntimeOf(id); got != "crun" {
			t.Errorf("%s: %s %s runs under %q, want crun", rt.Handler, what, id, got)
		}
	}
}
