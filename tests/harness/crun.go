//go:build e2e

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Crun returns the path of crun (Debian's package installs
// /usr/bin/crun), "" when it is not installed.
func Crun() string {
	p, err := exec.LookPath("crun")
	if err != nil {
		return ""
	}
	return p
}

// crunCompatScript adapts Debian 12's crun 1.8.1 to containerd 2.x on
// these machines, changing nothing else of what crun does:
//   - crun 1.8.1 refuses a spec whose ociVersion is 1.2 or later ("unknown
//     version specified"), and containerd 2.2 to 2.4 write 1.3.0: create
//     and run get a bundle whose config.json says 1.1.0;
//   - crun refuses cgroup v1 hybrid mode when the cgroup2 hierarchy at
//     /sys/fs/cgroup/unified has a controller ("cgroups in hybrid mode not
//     supported", whatever --cgroup-manager), as here, where hugetlb is
//     not mounted as v1: crun runs in a mount namespace of its own where
//     a tmpfs hides that hierarchy, so it sees plain cgroup v1. Every
//     other mount keeps its propagation (shared mounts stay peers of the
//     host's, as CRI's rshared and rslave volumes need); the hierarchy is
//     made private there first, so the tmpfs never reaches the host.
//
// unshare and sh exec, so crun keeps the pid go-runc started.
const crunCompatScript = `#!/bin/sh
prev=
for a; do
	case "$prev" in --bundle|-b) bundle=$a ;; esac
	prev=$a
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
	sed -i 's/"ociVersion": *"1\.[2-9][^"]*"/"ociVersion":"1.1.0"/' "$bundle/config.json"
fi
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
	exec unshare --mount --propagation unchanged sh -c 'mount --make-private /sys/fs/cgroup/unified &&
		mount -t tmpfs crun-compat /sys/fs/cgroup/unified && exec "$0" "$@"' %s "$@"
fi
exec %s "$@"
`

// CrunCompat writes crun-compat, a wrapper running crun as
// crunCompatScript describes, into dir and returns its path ("" when crun
// is not installed). It is what the crun e2e rows and `make critest-crun`
// give as BinaryName: Debian 12's crun runs no container of containerd 2.x
// without it.
func CrunCompat(dir string) (string, error) {
	crun := Crun()
	if crun == "" {
		return "", nil
	}
	path := filepath.Join(dir, "crun-compat")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(crunCompatScript, crun, crun)), 0o755); err != nil {
		return "", fmt.Errorf("write crun-compat: %w", err)
	}
	return path, nil
}
