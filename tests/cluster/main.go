//go:build e2e

// Command watch-cluster is `make cluster` and `make cluster-down`: a
// private single-node Kubernetes cluster (tests/harness: etcd, API server,
// controller manager, scheduler and a kubelet on a private, supervised
// containerd with runtime handler runc) that keeps running in the
// background, with the shim installed the way users install it: deploy/'s
// DaemonSet (image built by tests/images), which registers handler watch,
// restarts containerd and labels the node, and RuntimeClass watch.
//
//	watch-cluster up     start it; returns once the node is Ready and
//	                     labelled by the installer, so that RuntimeClass
//	                     watch schedules pods; kubeconfig in .cluster/
//	watch-cluster down   stop it and remove everything it started
//
// `up` runs `watch-cluster serve` detached; serve owns the cluster and
// removes all of it on SIGTERM (what `down` sends) or SIGINT.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// Files in the state dir (.cluster by default).
const (
	pidFile        = "pid"
	readyFile      = "ready"
	kubeconfigFile = "kubeconfig"
	logFile        = "cluster.log"
)

func main() {
	dir := flag.String("dir", ".cluster", "state directory: pid, kubeconfig, log")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "up":
		err = up(*dir)
	case "down":
		err = down(*dir)
	case "serve":
		serve(*dir)
	default:
		err = errors.New("usage: watch-cluster [-dir DIR] up|down")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch-cluster:", err)
		os.Exit(1)
	}
}

// up starts serve detached and waits until it reports ready or exits.
func up(dir string) error {
	if pid, ok := running(dir); ok {
		return fmt.Errorf("already running (pid %d); kubeconfig %s", pid, filepath.Join(dir, kubeconfigFile))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{pidFile, readyFile, kubeconfigFile} {
		os.Remove(filepath.Join(dir, f))
	}
	log, err := os.Create(filepath.Join(dir, logFile))
	if err != nil {
		return err
	}
	defer log.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-dir", dir, "serve")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start serve: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, pidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return waitReady(dir, exited)
}

func waitReady(dir string, exited <-chan error) error {
	deadline := time.After(10 * time.Minute)
	for {
		select {
		case err := <-exited:
			os.Remove(filepath.Join(dir, pidFile))
			data, _ := os.ReadFile(filepath.Join(dir, logFile))
			return fmt.Errorf("cluster failed to start (%v):\n%s", err, data)
		case <-deadline:
			return fmt.Errorf("cluster not ready after 10m; see %s", filepath.Join(dir, logFile))
		case <-time.After(time.Second):
		}
		if info, err := os.ReadFile(filepath.Join(dir, readyFile)); err == nil {
			fmt.Print(string(info))
			return nil
		}
	}
}

// serve owns the cluster: it starts it, writes the kubeconfig and the
// ready file, and sleeps. The harness's signal handler removes everything
// on SIGTERM or SIGINT and exits.
func serve(dir string) {
	r := &runner{}
	start := time.Now()
	k := harness.StartCluster(r, harness.ClusterOptions{
		Containerd: harness.Options{Supervise: true, NoWatchRuntime: true},
	})
	if err := k.BuildInstallerImage(""); err != nil {
		r.Fatalf("installer image: %v", err)
	}
	if err := k.ApplyDeploy(); err != nil {
		r.Fatalf("deploy: %v", err)
	}
	if err := k.WaitInstalled(3 * time.Minute); err != nil {
		r.Fatalf("install: %v", err)
	}
	cfg, err := os.ReadFile(k.Kubeconfig)
	if err != nil {
		r.Fatalf("kubeconfig: %v", err)
	}
	kc, _ := filepath.Abs(filepath.Join(dir, kubeconfigFile))
	if err := os.WriteFile(kc, cfg, 0o600); err != nil {
		r.Fatalf("kubeconfig: %v", err)
	}
	bin, _ := harness.BinDir()
	info := fmt.Sprintf(`cluster ready in %s: node %s, containerd %s, shim installed by deploy/ (namespace watch-system), RuntimeClass watch; state in %s
  export KUBECONFIG=%s
  %s get nodes
  make cluster-down    # stops it and removes everything
`, time.Since(start).Round(time.Second), k.NodeName, k.C.Version, k.C.Dir, kc, filepath.Join(bin, "kubectl"))
	fmt.Print(info)
	if err := os.WriteFile(filepath.Join(dir, readyFile), []byte(info), 0o644); err != nil {
		r.Fatalf("ready: %v", err)
	}
	select {}
}

// down sends SIGTERM to serve and waits until it has removed everything.
func down(dir string) error {
	pid, ok := running(dir)
	if !ok {
		fmt.Println("watch-cluster: no cluster running")
		return removeState(dir)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still running after 3m; see %s", pid, filepath.Join(dir, logFile))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Println("watch-cluster: stopped; everything removed")
	return removeState(dir)
}

// running returns serve's pid when it is alive (and is watch-cluster).
func running(dir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "watch-cluster") {
		return 0, false
	}
	return pid, true
}

func removeState(dir string) error {
	for _, f := range []string{pidFile, readyFile, kubeconfigFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
