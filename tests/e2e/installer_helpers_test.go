//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// installerLabel is the node label the installer sets (installer.NodeLabel).
const installerLabel = "watchshim.github.io/installed"

// installerNS and installerSelector find the installer's pods.
const (
	installerNS       = "watch-system"
	installerSelector = "app.kubernetes.io/name=watch-installer"
)

// buildInstallerImage builds the installer binary and the installer image
// (tests/images) around it and shim (.bin's when ""), and imports it into
// the node's containerd, replacing an image of the same reference.
func buildInstallerImage(t *testing.T, k *harness.Cluster, shim string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if shim == "" {
		shim = filepath.Join(root, ".bin", harness.WatchShim)
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "containerd-shim-watch-installer")
	goRun(t, root, "build", "-trimpath", "-o", inst, "./cmd/containerd-shim-watch-installer")
	goRun(t, root, "run", "./tests/images", "-out", dir, "-installer", inst, "-shim", shim)
	if _, err := k.C.CtrNS("k8s.io", "images", "import", "--local", "--all-platforms", filepath.Join(dir, "installer.tar")); err != nil {
		t.Fatalf("import installer image: %v", err)
	}
}

// buildShimVersion builds the shim as `make build` does, with version v:
// a binary that differs from .bin's.
func buildShimVersion(t *testing.T, v string) string {
	t.Helper()
	root, _ := harness.RepoRoot()
	out := filepath.Join(t.TempDir(), harness.WatchShim)
	goRun(t, root, "build", "-trimpath", "-ldflags", "-X main.version="+v+" -s -w", "-o", out, "./cmd/containerd-shim-watch-v2")
	return out
}

// shimExes returns the executable link of every running process whose
// binary is (or was, " (deleted)") path.
func shimExes(path string) map[int]string {
	out := map[int]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		exe, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(exe, path) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		out[pid] = exe
	}
	return out
}

func goRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// nodePaths are the host paths the installer is pointed at on the test
// node: everything lives in the harness containerd's dir; the shim goes
// into the dir at the head of containerd's PATH, as /usr/local/bin on a
// node.
type nodePaths struct {
	config, confDir, installDir, state, socket, pidFile string
}

func nodePathsOf(c *harness.Containerd) nodePaths {
	return nodePaths{
		config: c.ConfigPath(), confDir: filepath.Join(c.Dir, "conf.d"),
		installDir: c.PathDir(), state: filepath.Join(c.Dir, "state"),
		socket: c.Address, pidFile: c.PidFile(),
	}
}

func (p nodePaths) shim() string   { return filepath.Join(p.installDir, harness.WatchShim) }
func (p nodePaths) dropIn() string { return filepath.Join(p.confDir, "containerd-shim-watch.toml") }

// applyDeploy applies deploy/*.yaml in order, the DaemonSet pointed at
// the test node: its env names the node's paths and the signal restart
// method against the harness' supervised containerd, one hostPath mounts
// the containerd dir at the same path under /host, and the API server is
// reached on loopback (the test bed runs no kube-proxy for the
// kubernetes Service). Everything else is applied as the files say.
func applyDeploy(t *testing.T, k *harness.Cluster, p nodePaths) {
	t.Helper()
	root, _ := harness.RepoRoot()
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no deploy/*.yaml")
	}
	for _, f := range files {
		out, err := k.Kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(out)) // one object per document
		for dec.More() {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj["kind"] == "DaemonSet" {
				if err := pointAtTestNode(obj, k, p); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
			data, _ := json.Marshal(obj)
			if err := k.Apply(string(data)); err != nil {
				t.Fatalf("apply %s: %v", f, err)
			}
		}
	}
}

func pointAtTestNode(ds map[string]any, k *harness.Cluster, p nodePaths) error {
	spec := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	ctr := spec["containers"].([]any)[0].(map[string]any)
	set := map[string]string{
		"WATCH_RESTART": "signal:" + p.pidFile, "WATCH_INSTALL_DIR": p.installDir,
		"WATCH_CONTAINERD_CONFIG": p.config, "WATCH_CONTAINERD_CONF_DIR": p.confDir,
		"WATCH_CONTAINERD_STATE": p.state, "WATCH_CONTAINERD_SOCKET": p.socket,
	}
	env := ctr["env"].([]any)
	for _, e := range env {
		e := e.(map[string]any)
		if v, ok := set[e["name"].(string)]; ok {
			e["value"] = v
			delete(set, e["name"].(string))
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("DaemonSet lacks env %v", set)
	}
	port := k.Server[strings.LastIndex(k.Server, ":")+1:]
	ctr["env"] = append(env,
		map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
		map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": port})
	spec["volumes"] = []any{map[string]any{"name": "node", "hostPath": map[string]any{"path": k.C.Dir, "type": "Directory"}}}
	ctr["volumeMounts"] = []any{map[string]any{"name": "node", "mountPath": "/host" + k.C.Dir}}
	return nil
}

// nodeLabel returns the node's installer label ("" when unset).
func nodeLabel(t *testing.T, k *harness.Cluster) string {
	t.Helper()
	out, err := k.Kubectl("get", "node", k.NodeName, "-o", "jsonpath={.metadata.labels.watchshim\\.github\\.io/installed}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// waitFor polls cond every 500 ms until it holds, failing after timeout
// with what and the last description cond gave.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s (%s)", what, timeout, desc)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// installerPod returns the name of the running installer pod whose log
// says it finished installing, "" when there is none yet.
func installerPod(t *testing.T, k *harness.Cluster) (string, string) {
	t.Helper()
	out, err := k.Kubectl("get", "pods", "-n", installerNS, "-l", installerSelector, "-o",
		`jsonpath={range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return "", err.Error()
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 1 {
			continue // none, or being deleted
		}
		logs, _ := k.Kubectl("logs", "-n", installerNS, f[0])
		if strings.Contains(logs, "waiting for SIGTERM") {
			return f[0], logs
		}
		return "", "pod " + f[0] + " logs:\n" + logs
	}
	return "", "no running installer pod: " + out
}

// waitInstalled waits until an installer pod finished installing and
// returns its name and log.
func waitInstalled(t *testing.T, k *harness.Cluster) (string, string) {
	t.Helper()
	var name, logs string
	waitFor(t, 3*time.Minute, "installer pod installed", func() (bool, string) {
		var desc string
		name, desc = installerPod(t, k)
		logs = desc
		return name != "", desc
	})
	return name, logs
}

// installerExec runs the installer binary in pod with args; the pod's env
// configures it as it configures `run`.
func installerExec(k *harness.Cluster, pod string, args ...string) (string, error) {
	return k.Kubectl(append([]string{"exec", "-n", installerNS, pod, "--", "/containerd-shim-watch-installer"}, args...)...)
}

// fileStamp is a file's content and mtime, "" when absent.
func fileStamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	data, _ := os.ReadFile(path)
	return fmt.Sprintf("%s %x", st.ModTime().Format(time.RFC3339Nano), data)
}

// sleepPod is a pod whose container prints a line and sleeps.
func sleepPod(name, runtimeClass string) string {
	rc := ""
	if runtimeClass != "" {
		rc = "  runtimeClassName: " + runtimeClass + "\n"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
spec:
%[2]s  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %[3]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from %[1]s; trap 'exit 0' TERM; while true; do sleep 1; done"]
`, name, rc, harness.BusyboxImage)
}
