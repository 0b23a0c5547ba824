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
	binary, root, id, bundle string
	pid                      int
}

func (r runcContainer) String() string {
	return r.id + " (" + filepath.Base(r.binary) + ", root " + r.root + ", bundle " + r.bundle + ")"
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

// ociBinaries are the OCI runtimes whose containers cleanup looks for:
// runc, and crun when installed (Options.OCIRuntime). Each reads only its
// own state: a root may hold both kinds.
func ociBinaries() []string {
	out := []string{runcBinary()}
	if crun := Crun(); crun != "" {
		out = append(out, crun)
	}
	return out
}

// runcContainersUnder returns the runc (or crun) containers whose bundle is
// under dir.
func runcContainersUnder(dir string) []runcContainer {
	var out []runcContainer
	for _, root := range runcRoots(dir) {
		for _, bin := range ociBinaries() {
			out = append(out, listUnder(bin, root, dir)...)
		}
	}
	return out
}

// listUnder returns the containers bin lists in root whose bundle is under
// dir.
func listUnder(bin, root, dir string) []runcContainer {
	raw, err := exec.Command(bin, "--root", root, "list", "--format", "json").Output()
	if err != nil {
		return nil
	}
	var list []struct {
		ID     string `json:"id"`
		Pid    int    `json:"pid"`
		Bundle string `json:"bundle"`
	}
	json.Unmarshal(raw, &list)
	var out []runcContainer
	for _, c := range list {
		if strings.HasPrefix(c.Bundle, dir+"/") {
			out = append(out, runcContainer{binary: bin, root: root, id: c.ID, bundle: c.Bundle, pid: c.Pid})
		}
	}
	return out
}

// deleteRuncContainers force-deletes (killing all their processes) the runc
// containers bundled under dir.
func deleteRuncContainers(dir string) {
	for _, c := range runcContainersUnder(dir) {
		exec.Command(c.binary, "--root", c.root, "delete", "--force", c.id).Run()
	}
}

// OCIRuntimeOf returns the base name of the OCI runtime ("runc", "crun")
// whose state lists container id with its bundle in this instance, "" when
// none does: which binary a shim really ran, whatever its options say.
func (c *Containerd) OCIRuntimeOf(id string) string {
	for _, rc := range runcContainersUnder(c.Dir) {
		if rc.id == id {
			return filepath.Base(rc.binary)
		}
	}
	return ""
}
