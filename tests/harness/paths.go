//go:build e2e

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Image references of the test images built by tests/images.
const (
	BusyboxImage = "docker.io/library/busybox:watch-test"
	PauseImage   = "registry.k8s.io/pause:watch-test"
)

// Runtime types of the two runtimes every containerd is configured with.
const (
	RuncRuntime  = "io.containerd.runc.v2"
	WatchRuntime = "io.containerd.watch.v2"
)

// Shim binary names.
const (
	RuncShim  = "containerd-shim-runc-v2"
	WatchShim = "containerd-shim-watch-v2"
)

const modulePath = "module github.com/watchshim/containerd-shim-watch-v2"

// RepoRoot returns the root of the repository, found by walking up from the
// working directory (or WATCH_REPO_ROOT when set).
func RepoRoot() (string, error) {
	if dir := os.Getenv("WATCH_REPO_ROOT"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root not found")
		}
		dir = parent
	}
}

// BinDir returns the .bin directory of the repository.
func BinDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".bin"), nil
}

// DefaultVersions are the containerd lines tested when
// WATCH_CONTAINERD_VERSIONS is unset, oldest first: 2.2, the long-term
// support line 2.3 and the current 2.4, each built by scripts/install-deps.sh
// from tests/tools/containerd-<version>.
var DefaultVersions = []string{"2.2", "2.3", "2.4"}

// Versions returns the containerd versions to test, oldest first, from
// WATCH_CONTAINERD_VERSIONS (space separated), DefaultVersions when unset.
func Versions() []string {
	if v := strings.Fields(os.Getenv("WATCH_CONTAINERD_VERSIONS")); len(v) > 0 {
		return v
	}
	return DefaultVersions
}

// NewestVersion returns the last of Versions(): where a test that runs on
// one containerd only (the crun rows) runs.
func NewestVersion() string {
	v := Versions()
	return v[len(v)-1]
}

// binaries lists the paths one containerd version needs.
type binaries struct {
	containerd, ctr, runcShim, runc, crictl, watchShim string
	images                                             string
}

func binariesFor(bin, version string) binaries {
	dir := filepath.Join(bin, "containerd-"+version)
	return binaries{
		containerd: filepath.Join(dir, "containerd"),
		ctr:        filepath.Join(dir, "ctr"),
		runcShim:   filepath.Join(dir, RuncShim),
		runc:       filepath.Join(bin, "runc"),
		crictl:     filepath.Join(bin, "crictl"),
		watchShim:  filepath.Join(bin, WatchShim),
		images:     filepath.Join(bin, "images"),
	}
}

// missing returns the required files that do not exist (the watch shim is optional).
func (b binaries) missing() []string {
	var out []string
	for _, p := range []string{b.containerd, b.ctr, b.runcShim, b.runc, b.crictl,
		filepath.Join(b.images, "busybox.tar"), filepath.Join(b.images, "pause.tar")} {
		if _, err := os.Stat(p); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// HasWatchShim reports whether .bin/containerd-shim-watch-v2 exists.
func HasWatchShim() bool {
	bin, err := BinDir()
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(bin, WatchShim))
	return err == nil
}

// SkipWithoutWatchShim skips t when the watch shim has not been built.
func SkipWithoutWatchShim(t testing.TB) {
	t.Helper()
	if !HasWatchShim() {
		t.Skip("skipping: .bin/" + WatchShim + " missing (run make build)")
	}
}
