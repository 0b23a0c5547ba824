//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestKubernetesInstaller installs the shim through deploy/'s DaemonSet
// on a real single-node cluster whose containerd knows no runtime watch
// and is supervised like a systemd service, restarted by the installer's
// signal:PIDFILE method. Then: the node is labelled, a pod on
// RuntimeClass watch and one on the default runc run with exec and logs;
// a re-run (the installer pod recreated) changes no file and does not
// restart containerd; a label removed with kubectl comes back within the
// label check's interval, through deploy/optional's admission policy,
// which denies the installer's account any other change; an upgrade (a new image rolled out) replaces the
// binary under the running watch pod, which keeps working, while a new
// pod runs the new binary; a malformed config is refused with nothing
// changed; uninstall with a watch pod running removes the label only
// (runtime and binary stay, the pod keeps working), and once the pods are
// gone removes binary, drop-in and import, restoring the config byte for
// byte; with WATCH_UNINSTALL_ON_EXIT, deleting the DaemonSet uninstalls.
func TestKubernetesInstaller(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	k := harness.StartCluster(t, harness.ClusterOptions{
		Containerd: harness.Options{Supervise: true, NoWatchRuntime: true},
	})
	p := k.NodePaths()
	original, err := os.ReadFile(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.BuildInstallerImage(""); err != nil {
		t.Fatal(err)
	}
	pid0 := k.C.Pid()
	start := time.Now()
	if err := k.ApplyDeploy(); err != nil {
		t.Fatal(err)
	}
	pod, logs := waitInstalled(t, k)
	waitFor(t, time.Minute, "node label", func() (bool, string) {
		l := nodeLabel(t, k)
		return l == "true", "label " + l
	})
	t.Logf("installed and labelled %s after apply; installer log:\n%s", time.Since(start).Round(100*time.Millisecond), logs)
	checkInstalled(t, k, p, pid0)

	t.Run("pods", func(t *testing.T) { runPods(t, k) })
	t.Run("rerun", func(t *testing.T) { pod = rerunChangesNothing(t, k, p, pod) })
	t.Run("relabel", func(t *testing.T) { pod = relabel(t, k) })
	t.Run("upgrade", func(t *testing.T) { pod = upgrade(t, k, p) })
	t.Run("malformed", func(t *testing.T) { malformedRefused(t, k, p, pod) })
	t.Run("uninstall", func(t *testing.T) { uninstall(t, k, p, pod, original) })
	t.Run("uninstall-on-delete", func(t *testing.T) { uninstallOnDelete(t, k, p, original) })
}

// checkInstalled checks the node's files after the install: the shim as
// in .bin, the drop-in, the import exactly once, containerd restarted.
func checkInstalled(t *testing.T, k *harness.Cluster, p harness.NodePaths, pid0 int) {
	t.Helper()
	bin, _ := harness.BinDir()
	want, _ := os.ReadFile(filepath.Join(bin, harness.WatchShim))
	if got, err := os.ReadFile(p.Shim()); err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed shim %s: %d bytes, %v; want .bin's (%d bytes)", p.Shim(), len(got), err, len(want))
	}
	dropIn, err := os.ReadFile(p.DropIn())
	if err != nil || !strings.Contains(string(dropIn), "runtime_path = '"+p.Shim()+"'") {
		t.Errorf("drop-in %s: %v\n%s", p.DropIn(), err, dropIn)
	}
	config, _ := os.ReadFile(p.Config)
	if n := strings.Count(string(config), p.DropIn()); n != 1 {
		t.Errorf("config names the drop-in %d times, want 1:\n%s", n, config)
	}
	if pid := k.C.Pid(); pid == pid0 || pid == 0 {
		t.Errorf("containerd pid %d after install (before %d): want a restarted containerd", pid, pid0)
	}
}

// runPods runs a pod on watch and one on runc: both Running, exec and
// logs work, and the watch pod's sandbox runs on handler watch.
func runPods(t *testing.T, k *harness.Cluster) {
	for _, p := range []struct{ name, class, handler string }{{"sleep-watch", "watch", "watch"}, {"sleep-runc", "", "runc"}} {
		if err := k.Apply(sleepPod(p.name, p.class)); err != nil {
			t.Fatal(err)
		}
		waitPodPhase(t, k, p.name, "Running", 2*time.Minute)
		if h, _ := sandboxOf(t, k, p.name); h != p.handler && !(p.handler == "runc" && h == "") {
			t.Errorf("pod %s: handler %q, want %q", p.name, h, p.handler)
		}
		out, err := k.Kubectl("exec", p.name, "--", "sh", "-c", "echo exec in $HOSTNAME")
		if err != nil || strings.TrimSpace(out) != "exec in "+p.name {
			t.Errorf("kubectl exec %s = %q, %v", p.name, out, err)
		}
		waitFor(t, 30*time.Second, "logs of "+p.name, func() (bool, string) {
			logs, err := k.Kubectl("logs", p.name)
			return err == nil && strings.TrimSpace(logs) == "hello from "+p.name, logs
		})
	}
}

// rerunChangesNothing deletes the installer pod; the DaemonSet's new pod
// installs again, which must leave every file as it was (content and
// mtime) and containerd running with the same pid. It returns the new pod.
func rerunChangesNothing(t *testing.T, k *harness.Cluster, p harness.NodePaths, pod string) string {
	files := []string{p.Config, p.Config + ".watch-installer.bak", p.DropIn(), p.Shim()}
	before := map[string]string{}
	for _, f := range files {
		before[f] = fileStamp(f)
	}
	pid := k.C.Pid()
	if _, err := k.Kubectl("delete", "pod", "-n", installerNS, pod, "--wait", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	newPod, logs := waitInstalled(t, k)
	if newPod == pod || !strings.Contains(logs, "already installed: nothing changed") {
		t.Errorf("re-run pod %s (was %s) log:\n%s\nwant \"already installed: nothing changed\"", newPod, pod, logs)
	}
	for _, f := range files {
		if got := fileStamp(f); got != before[f] || got == "" {
			t.Errorf("%s changed by the re-run (or absent)", f)
		}
	}
	if got := k.C.Pid(); got != pid {
		t.Errorf("containerd pid %d after the re-run, was %d: restarted for nothing", got, pid)
	}
	return newPod
}

// relabel shortens the label check to labelInterval (a rollout), applies
// deploy/optional's policy confining the installer's service account to
// its own node's label, and checks that the policy denies that account
// any other change. Then the label, removed with kubectl by an admin and
// by the account itself, comes back each time: the installer puts it
// back with its pod's token, through the policy. It returns the new
// installer pod.
func relabel(t *testing.T, k *harness.Cluster) string {
	if _, err := k.Kubectl("set", "env", "-n", installerNS, "daemonset/watch-installer", "WATCH_LABEL_INTERVAL="+labelInterval.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("rollout", "status", "-n", installerNS, "daemonset/watch-installer", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	pod, logs := waitInstalled(t, k)
	if !strings.Contains(logs, "every "+labelInterval.String()) {
		t.Fatalf("installer pod %s does not check its label every %s:\n%s", pod, labelInterval, logs)
	}
	applyOwnNodePolicy(t, k)
	labelled := func() (bool, string) {
		l := nodeLabel(t, k)
		return l == "true", "label " + l
	}
	restored := func() int {
		logs, _ := k.Kubectl("logs", "-n", installerNS, pod)
		return strings.Count(logs, "was missing: set again")
	}
	if ok, desc := labelled(); !ok {
		t.Fatalf("before the label's removal: %s", desc)
	}
	before := restored()
	for _, as := range [][]string{nil, installerAccount(k.NodeName)} {
		start := time.Now()
		if out, err := k.Kubectl(append([]string{"label", "node", k.NodeName, harness.InstallerLabel + "-"}, as...)...); err != nil {
			t.Fatalf("remove the label %v: %v\n%s", as, err, out)
		}
		waitFor(t, 30*time.Second, "label back", labelled)
		t.Logf("label removed (%v): back after %s", as, time.Since(start).Round(100*time.Millisecond))
	}
	if n := restored() - before; n != 2 {
		logs, _ = k.Kubectl("logs", "-n", installerNS, pod)
		t.Errorf("installer log has %d new label restorations, want 2:\n%s", n, logs)
	}
	return pod
}

// upgrade rolls out an installer image holding another shim build: the
// new pod replaces the binary without restarting containerd; the running
// watch pod's shim keeps the old (now deleted) file and serves exec, logs
// and exit codes; a new watch pod runs the new binary. It returns the new
// installer pod.
func upgrade(t *testing.T, k *harness.Cluster, p harness.NodePaths) string {
	shim := buildShimVersion(t, "upgrade-test")
	if err := k.BuildInstallerImage(shim); err != nil {
		t.Fatal(err)
	}
	pid := k.C.Pid()
	old := shimExes(p.Shim())
	if len(old) != 1 {
		t.Fatalf("shims running %s before the upgrade: %v, want the watch pod's one", p.Shim(), old)
	}
	if _, err := k.Kubectl("rollout", "restart", "-n", installerNS, "daemonset/watch-installer"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("rollout", "status", "-n", installerNS, "daemonset/watch-installer", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	pod, logs := waitInstalled(t, k)
	want, _ := os.ReadFile(shim)
	if got, _ := os.ReadFile(p.Shim()); !bytes.Equal(got, want) {
		t.Fatalf("installed shim is not the upgrade's; installer log:\n%s", logs)
	}
	if k.C.Pid() != pid {
		t.Error("containerd restarted by an upgrade that changed only the binary")
	}
	for spid, exe := range shimExes(p.Shim()) {
		if _, ok := old[spid]; ok && !strings.HasSuffix(exe, " (deleted)") {
			t.Errorf("old shim %d runs %q, want the replaced file (deleted)", spid, exe)
		}
	}
	out, err := k.Kubectl("exec", "sleep-watch", "--", "sh", "-c", "echo old pod; exit 7")
	if strings.TrimSpace(out) != "old pod" || err == nil || !strings.Contains(err.Error(), "exit code 7") {
		t.Errorf("exec in the old watch pod after the upgrade: %q, %v; want its output and exit code 7", out, err)
	}
	if logs, err := k.Kubectl("logs", "sleep-watch"); err != nil || !strings.Contains(logs, "hello from sleep-watch") {
		t.Errorf("logs of the old watch pod after the upgrade: %q, %v", logs, err)
	}
	if err := k.Apply(sleepPod("upgrade-watch", "watch")); err != nil {
		t.Fatal(err)
	}
	waitPodPhase(t, k, "upgrade-watch", "Running", 2*time.Minute)
	fresh := 0
	for spid, exe := range shimExes(p.Shim()) {
		if _, ok := old[spid]; !ok && exe == p.Shim() {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("shims of the new binary after a new watch pod: %d, want 1 (%v)", fresh, shimExes(p.Shim()))
	}
	return pod
}

// malformedRefused runs the installer (in its pod, against the node) on
// a config it cannot parse: it must fail saying so and change nothing.
func malformedRefused(t *testing.T, k *harness.Cluster, p harness.NodePaths, pod string) {
	bad := filepath.Join(k.C.Dir, "malformed.toml")
	badData := "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\"\nimports = [\n"
	if err := os.WriteFile(bad, []byte(badData), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{bad, p.Config, p.DropIn(), p.Shim()}
	before := map[string]string{}
	for _, f := range files {
		before[f] = fileStamp(f)
	}
	pid := k.C.Pid()
	out, err := installerExec(k, pod, "install", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), "containerd config refused: parse "+bad) {
		t.Errorf("install on a malformed config: %v\n%s\nwant refused with the parse error", err, out)
	}
	t.Logf("refused: %v", err)
	for _, f := range files {
		if fileStamp(f) != before[f] {
			t.Errorf("%s changed by a refused install", f)
		}
	}
	if entries, _ := filepath.Glob(bad + "*"); len(entries) != 1 {
		t.Errorf("files next to the malformed config: %v, want none (no backup of a refused config)", entries)
	}
	if k.C.Pid() != pid {
		t.Error("containerd restarted by a refused install")
	}
}

// uninstall runs the installer's uninstall in its pod while the watch pod
// runs: it removes the node label (a new watch pod stays Pending) and
// leaves runtime and binary installed, the watch pod working. Once the
// pods are gone, a second uninstall removes binary, drop-in and import,
// restoring the config byte for byte, and restarts containerd.
func uninstall(t *testing.T, k *harness.Cluster, p harness.NodePaths, pod string, original []byte) {
	files := []string{p.Config, p.Config + ".watch-installer.bak", p.DropIn(), p.Shim()}
	before := map[string]string{}
	for _, f := range files {
		before[f] = fileStamp(f)
	}
	pid := k.C.Pid()
	out, err := installerExec(k, pod, "uninstall")
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("uninstall with a watch pod running:\n%s", out)
	if l := nodeLabel(t, k); l != "" {
		t.Errorf("label %q after uninstall", l)
	}
	if !strings.Contains(out, "runtime watch left installed") {
		t.Errorf("uninstall output lacks \"runtime watch left installed\"")
	}
	for _, f := range files {
		if got := fileStamp(f); got != before[f] || got == "" {
			t.Errorf("%s changed (or absent) after an uninstall while a watch pod runs", f)
		}
	}
	if k.C.Pid() != pid {
		t.Error("containerd restarted by an uninstall while a watch pod runs")
	}
	if out, err := k.Kubectl("exec", "sleep-watch", "--", "echo", "still here"); err != nil || strings.TrimSpace(out) != "still here" {
		t.Errorf("exec in the watch pod after uninstall: %q, %v", out, err)
	}
	if err := k.Apply(sleepPod("late-watch", "watch")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2*labelInterval + time.Second) // the label check runs meanwhile
	if st := getPod(t, k, "late-watch"); st.Status.Phase != "Pending" {
		t.Errorf("a watch pod created after uninstall is %s, want Pending (node unlabelled)", st.Status.Phase)
	}
	if l := nodeLabel(t, k); l != "" {
		t.Errorf("label %q back while the uninstall waits for the watch pods", l)
	}

	if _, err := k.Kubectl("delete", "pod", "--wait", "--timeout=2m", "sleep-watch", "sleep-runc", "late-watch", "upgrade-watch"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "watch task bundles gone", func() (bool, string) {
		b, _ := filepath.Glob(filepath.Join(p.State, "io.containerd.runtime.v2.task", "*", "*", "shim-binary-path"))
		for _, f := range b {
			if data, _ := os.ReadFile(f); string(data) == p.Shim() {
				return false, f
			}
		}
		return true, ""
	})
	out, err = installerExec(k, pod, "uninstall")
	if err != nil {
		t.Fatalf("second uninstall: %v\n%s", err, out)
	}
	// The restart, uninstall's last step, cuts the exec stream: wait for
	// the new containerd rather than for the output.
	t.Logf("uninstall once the pods are gone:\n%s", out)
	waitRestarted(t, k, pid)
	for _, f := range []string{p.Shim(), p.DropIn(), p.Config + ".watch-installer.bak"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after the second uninstall", f)
		}
	}
	if got, _ := os.ReadFile(p.Config); !bytes.Equal(got, original) {
		t.Errorf("config after uninstall:\n%s\nwant the original:\n%s", got, original)
	}
}

// uninstallOnDelete sets WATCH_UNINSTALL_ON_EXIT on the DaemonSet (its
// rollout installs again) and deletes it: the stopping pod uninstalls,
// the config restored byte for byte.
func uninstallOnDelete(t *testing.T, k *harness.Cluster, p harness.NodePaths, original []byte) {
	if _, err := k.Kubectl("set", "env", "-n", installerNS, "daemonset/watch-installer", "WATCH_UNINSTALL_ON_EXIT=true"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("rollout", "status", "-n", installerNS, "daemonset/watch-installer", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	waitInstalled(t, k)
	if err := k.WaitInstalled(time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Shim()); err != nil {
		t.Fatalf("not installed again: %v", err)
	}
	pid := k.C.Pid()
	if _, err := k.Kubectl("delete", "-n", installerNS, "daemonset", "watch-installer", "--wait", "--timeout=2m"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "installer pods gone", func() (bool, string) {
		out, err := k.Kubectl("get", "pods", "-n", installerNS, "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	waitRestarted(t, k, pid)
	if l := nodeLabel(t, k); l != "" {
		t.Errorf("label %q after the DaemonSet's deletion", l)
	}
	for _, f := range []string{p.Shim(), p.DropIn(), p.Config + ".watch-installer.bak"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after the DaemonSet's deletion", f)
		}
	}
	if got, _ := os.ReadFile(p.Config); !bytes.Equal(got, original) {
		t.Errorf("config after the DaemonSet's deletion differs from the original:\n%s", got)
	}
}

// waitRestarted waits until containerd runs with a pid other than pid and
// serves.
func waitRestarted(t *testing.T, k *harness.Cluster, pid int) {
	t.Helper()
	waitFor(t, time.Minute, "containerd restarted", func() (bool, string) {
		now := k.C.Pid()
		if now == 0 || now == pid {
			return false, "pid " + strconv.Itoa(now)
		}
		_, err := k.C.Crictl("version")
		return err == nil, fmt.Sprint(err)
	})
}
