//go:build e2e

package harness

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// runcContainer is one container a runc root lists.
type runcContainer struct {
	root, id, bundle string
	pid              int
}

func (r runcContainer) String() string {
	return r.id + " (root " + r.root + ", bundle " + r.bundle + ")"
}

// runcRoots returns the runc state roots shims of any instance may use.
func runcRoots(dir string) []string {
	var roots []string
	for _, pattern := range []string{filepath.Join(dir, "runc", "*"), "/run/containerd/runc/*", "/run/runc"} {
		m, _ := filepath.Glob(pattern)
		roots = append(roots, m...)
	}
	return roots
}

// runcBinary returns the runc used for cleanup: .bin/runc, else PATH's.
func runcBinary() string {
	if bin, err := BinDir(); err == nil {
		if _, err := os.Stat(filepath.Join(bin, "runc")); err == nil {
			return filepath.Join(bin, "runc")
		}
	}
	return "runc"
}

// runcContainersUnder returns the runc containers whose bundle is under dir.
func runcContainersUnder(dir string) []runcContainer {
	var out []runcContainer
	for _, root := range runcRoots(dir) {
		raw, err := exec.Command(runcBinary(), "--root", root, "list", "--format", "json").Output()
		if err != nil {
			continue
		}
		var list []struct {
			ID     string `json:"id"`
			Pid    int    `json:"pid"`
			Bundle string `json:"bundle"`
		}
		json.Unmarshal(raw, &list)
		for _, c := range list {
			if strings.HasPrefix(c.Bundle, dir+"/") {
				out = append(out, runcContainer{root: root, id: c.ID, bundle: c.Bundle, pid: c.Pid})
			}
		}
	}
	return out
}

// deleteRuncContainers force-deletes (killing all their processes) the runc
// containers bundled under dir.
func deleteRuncContainers(dir string) {
	for _, c := range runcContainersUnder(dir) {
		exec.Command(runcBinary(), "--root", c.root, "delete", "--force", c.id).Run()
	}
}
