//go:build critest && e2e

// Package critest runs critest (cri-tools v1.34) against the runtime
// handlers runc (stock containerd-shim-runc-v2) and watch on one private
// containerd 2.4, offline: the images critest pulls are deterministic
// stand-ins served by a registry on 127.0.0.1, pods get addresses from a
// CNI bridge on a private subnet. It prints both summaries and the specs
// whose results differ, and fails when a spec fails or results differ.
// With CRITEST_RUNTIME_BINARY set (crun-compat, or a binary's name or
// path) both handlers run that OCI runtime instead of runc, through their
// options' BinaryName; crun-compat is Debian's crun adapted to containerd
// 2.x (harness.CrunCompat).
//
// Run as root: make critest (go test -tags e2e,critest in this directory);
// make critest-crun for crun.
package critest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

func TestCritest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: critest needs root")
	}
	harness.SkipWithoutWatchShim(t)
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	critestBin := filepath.Join(bin, "critest")
	if _, err := os.Stat(critestBin); err != nil {
		t.Skipf("skipping: %s missing (run make deps)", critestBin)
	}
	skips, err := readSkips("skip.txt")
	if err != nil {
		t.Fatal(err)
	}
	oci, err := ociRuntime(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Registered first, so it runs last: after containerd's cleanup.
	netnsBefore, chainsBefore := netnsList(), natChains()
	var dir string
	t.Cleanup(func() { reportLeftovers(t, dir, netnsBefore, chainsBefore) })

	images, err := buildImages(t, bin)
	if err != nil {
		t.Fatalf("build images: %v", err)
	}
	reg, err := startRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	if err := reg.Push(images); err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprint(images)
	if err != nil {
		t.Fatal(err)
	}
	logf("pushed %d stand-in images to the local registry (fingerprint %.16s)", len(images), fp)

	c := harness.Start(t, harness.Options{Version: "2.4", OCIRuntime: oci})
	dir = c.Dir
	// The temp dir is 0700: user-namespaced pods (their root is an
	// unprivileged host uid) must be able to traverse it to their rootfs.
	if err := os.Chmod(c.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := configureBed(c, reg); err != nil {
		t.Fatalf("configure containerd: %v", err)
	}
	if err := c.Restart(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	logf("containerd 2.4 in %s, OCI runtime %s", c.Dir, or(oci, "runc"))

	results := map[string]map[string]specResult{}
	for _, h := range handlers {
		name := h
		if oci != "" {
			name += "-" + filepath.Base(oci)
		}
		res, summary, err := runCritest(c, critestBin, h, name, skips)
		if err != nil {
			t.Errorf("critest %s: %v", h, err)
		}
		results[h] = res
		logf("=== %s summary: %s", h, summary)
		// Each handler starts from the same state: no pods, no pulled images.
		c.Crictl("rmp", "--force", "--all")
		c.Crictl("rmi", "--prune")
	}
	for _, h := range handlers {
		fmt.Printf("%-6s %s\n", h+":", countStates(results[h]))
	}
	diffs := compare(results[handlers[0]], results[handlers[1]])
	if len(diffs) == 0 {
		fmt.Println("specs whose result differs: none")
	} else {
		fmt.Printf("specs whose result differs (%d):\n", len(diffs))
		for _, d := range diffs {
			fmt.Println("  " + d)
		}
		t.Errorf("%d specs differ between %s and %s", len(diffs), handlers[0], handlers[1])
	}
	for _, h := range handlers {
		for _, name := range sortedNames(results[h]) {
			if r := results[h][name]; r.failed() {
				t.Errorf("%s: %s %s: %s", h, r.State, name, r.Message)
			}
		}
	}
	fmt.Printf("critest run time: %s\n", time.Since(start).Round(time.Second))
}

// ociRuntime resolves CRITEST_RUNTIME_BINARY: "" (runc, the default) when
// unset, crun-compat written into dir, else the path of the binary it
// names.
func ociRuntime(dir string) (string, error) {
	name := os.Getenv("CRITEST_RUNTIME_BINARY")
	switch name {
	case "":
		return "", nil
	case "crun-compat":
		path, err := harness.CrunCompat(dir)
		if err == nil && path == "" {
			err = fmt.Errorf("CRITEST_RUNTIME_BINARY=crun-compat: crun not installed")
		}
		return path, err
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("CRITEST_RUNTIME_BINARY: %w", err)
	}
	return filepath.Abs(path)
}

// readSkips reads the skip regexps of path: one a line, "#" comments.
func readSkips(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// configureBed adds the registry mirrors and the CNI network to the
// harness's containerd config (picked up on restart).
func configureBed(c *harness.Containerd, reg *localRegistry) error {
	hosts := filepath.Join(c.Dir, "certs.d")
	if err := reg.writeHosts(hosts); err != nil {
		return err
	}
	cfg := filepath.Join(c.Dir, "config.toml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n", hosts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	conflist := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "watch-critest",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": bridgeName, "isGateway": true, "ipMasq": false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": filepath.Join(c.Dir, "cni-ipam"),
					"ranges": [][]map[string]string{{{"subnet": podSubnet}}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, "cni", "10-watch-critest.conflist"), data, 0o644)
}

// buildImages builds the static stand-in programs, fetches Debian's
// busybox package into .bin/critest (once) and returns the images.
func buildImages(t *testing.T, bin string) (map[string]v1.Image, error) {
	tmp := t.TempDir()
	for _, prog := range []string{"nginx", "nonewprivs"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", filepath.Join(tmp, prog), "./standins/"+prog)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v: %s", prog, err, out)
		}
	}
	bb, err := fetchBusybox(filepath.Join(bin, "critest-busybox"))
	if err != nil {
		return nil, err
	}
	return standIns(bb, tmp)
}

// fetchBusybox extracts Debian's (dynamically linked) busybox package into
// dir unless already there, and returns dir.
func fetchBusybox(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "bin", "busybox")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp("", "watch-critest-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	download := func() error {
		cmd := exec.Command("apt-get", "download", "busybox")
		cmd.Dir = tmp
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get download busybox: %v: %s", err, out)
		}
		return nil
	}
	if err := download(); err != nil {
		if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get update: %v: %s", err, out)
		}
		if err := download(); err != nil {
			return "", err
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("busybox package not found after download")
	}
	os.RemoveAll(dir)
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x: %v: %s", err, out)
	}
	return dir, nil
}
