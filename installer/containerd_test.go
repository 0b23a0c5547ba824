package installer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerdReadsDropIn asks real containerd binaries (from .bin,
// built by scripts/install-deps.sh; skipped when absent) to load configs
// of version 2 and 3 after Install: `containerd config dump` needs no
// root and prints the merged configuration, imports resolved and
// migrated, which must hold runtime watch beside the config's own runc.
func TestContainerdReadsDropIn(t *testing.T) {
	bins, _ := filepath.Glob("../.bin/containerd-2.*/containerd")
	if len(bins) == 0 {
		t.Skip("skipping: no .bin/containerd-2.*/containerd (scripts/install-deps.sh)")
	}
	for _, bin := range bins {
		for name, config := range map[string]string{"v2": configV2, "v3": configV3} {
			t.Run(filepath.Base(filepath.Dir(bin))+"/"+name, func(t *testing.T) {
				dir := t.TempDir()
				o := Options{
					Shim: filepath.Join(dir, "image", ShimName), InstallDir: filepath.Join(dir, "bin"),
					Config: filepath.Join(dir, "config.toml"), ConfDir: filepath.Join(dir, "conf.d"),
					StateDir: filepath.Join(dir, "state"),
				}
				mustWrite(t, o.Shim, "shim", 0o755)
				mustWrite(t, o.Config, config, 0o600)
				if _, err := Install(context.Background(), o); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(bin, "--config", o.Config, "config", "dump").CombinedOutput()
				if err != nil {
					t.Fatalf("config dump: %v\n%s", err, out)
				}
				dump := string(out)
				for _, want := range []string{
					"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.watch]",
					"runtime_type = '" + RuntimeType + "'",
					"runtime_path = '" + o.ShimPath() + "'",
					"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
				} {
					if !strings.Contains(dump, want) {
						t.Errorf("merged config lacks %s:\n%s", want, dump)
					}
				}
				if _, err := Uninstall(context.Background(), o, false); err != nil {
					t.Fatal(err)
				}
				out, _ = exec.Command(bin, "--config", o.Config, "config", "dump").CombinedOutput()
				if strings.Contains(string(out), "runtimes.watch]") {
					t.Errorf("runtime watch still configured after uninstall")
				}
				if data, _ := os.ReadFile(o.Config); string(data) != config {
					t.Errorf("config after uninstall:\n%s", data)
				}
			})
		}
	}
}
