package main

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps returns the packages pkg links, as `go list -deps` says.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// The per-pod shim links no Prometheus code (nor the node metrics that use
// it): its memory must not grow with what only the node component serves.
// The installer, which serves the metrics, does link it: the check sees
// what it looks for.
func TestShimLinksNoPrometheus(t *testing.T) {
	prometheus := func(deps []string) []string {
		var out []string
		for _, d := range deps {
			if strings.Contains(d, "prometheus") || strings.HasSuffix(d, "/nodemetrics") {
				out = append(out, d)
			}
		}
		return out
	}
	if got := prometheus(goListDeps(t, ".")); len(got) > 0 {
		t.Errorf("the shim links %q", got)
	}
	if got := prometheus(goListDeps(t, "../containerd-shim-watch-installer")); len(got) == 0 {
		t.Errorf("the installer links no Prometheus package: the check finds nothing")
	}
}
