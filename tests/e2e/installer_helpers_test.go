//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// installerNS and installerSelector find the installer's pods.
const (
	installerNS       = "watch-system"
	installerSelector = "app.kubernetes.io/name=watch-installer"
)

// labelInterval is the installer's label check interval in the tests
// (WATCH_LABEL_INTERVAL; the DaemonSet's default is a minute).
const labelInterval = 2 * time.Second

// installerAccount returns kubectl's flags to act as the installer's
// service account with a pod-bound token of a pod on node ("": a token
// without node information).
func installerAccount(node string) []string {
	as := []string{"--as=system:serviceaccount:" + installerNS + ":watch-installer"}
	if node != "" {
		as = append(as, "--as-user-extra=authentication.kubernetes.io/node-name="+node)
	}
	return as
}

// applyOwnNodePolicy applies deploy/optional/own-node-policy.yaml, waits
// until the API server enforces it and checks what it denies the
// installer's account: the label on another node, another label, another
// value, a taint, and any change by a token without node information.
func applyOwnNodePolicy(t *testing.T, k *harness.Cluster) {
	t.Helper()
	root, _ := harness.RepoRoot()
	policy, err := os.ReadFile(filepath.Join(root, "deploy", "optional", "own-node-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(string(policy)); err != nil {
		t.Fatal(err)
	}
	const otherNode, onlyLabel = "only the node its pod runs on", "only the label " + harness.InstallerLabel
	// A server-side dry run goes through admission and changes nothing,
	// whether the policy denies it or not.
	denied := func(want string, args ...string) (bool, string) {
		out, err := k.Kubectl(append(args, "--dry-run=server")...)
		return err != nil && strings.Contains(err.Error(), want), fmt.Sprintf("%s %v", out, err)
	}
	waitFor(t, 30*time.Second, "policy enforced", func() (bool, string) {
		return denied(otherNode, append([]string{"label", "node", k.NodeName, harness.InstallerLabel + "-"}, installerAccount("other-node")...)...)
	})
	self := installerAccount(k.NodeName)
	for _, c := range []struct {
		want string
		args []string
	}{
		{onlyLabel, append([]string{"label", "node", k.NodeName, "evil=1"}, self...)},
		{onlyLabel, append([]string{"label", "node", k.NodeName, "--overwrite", harness.InstallerLabel + "=false"}, self...)},
		{onlyLabel, append([]string{"taint", "node", k.NodeName, "evil=1:NoSchedule"}, self...)},
		{otherNode, append([]string{"label", "node", k.NodeName, harness.InstallerLabel + "-"}, installerAccount("")...)},
	} {
		if ok, desc := denied(c.want, c.args...); !ok {
			t.Errorf("kubectl %v: %s; want denied (%q)", c.args, desc, c.want)
		}
	}
}

// buildShimVersion builds the shim as `make build` does, with version v:
// a binary that differs from .bin's.
func buildShimVersion(t *testing.T, v string) string {
	t.Helper()
	root, _ := harness.RepoRoot()
	out := filepath.Join(t.TempDir(), harness.WatchShim)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+v+" -s -w", "-o", out, "./cmd/containerd-shim-watch-v2")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, b)
	}
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

// nodeLabel returns the node's installer label ("" when unset).
func nodeLabel(t *testing.T, k *harness.Cluster) string {
	t.Helper()
	v, err := k.NodeLabelValue()
	if err != nil {
		t.Fatal(err)
	}
	return v
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
