//go:build e2e

package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// teardown runs first in the containerd's Cleanup, while containerd still
// runs: it stops the components, the kubelet first so that nothing
// restarts pods, etcd last. Containerd's own cleanup then removes the
// pods (CNI teardown included), processes and mounts under its Dir, the
// kubelet's among them.
func (k *Cluster) teardown() []string {
	if k.t.Failed() {
		for _, name := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
			k.t.Logf("%s log tail (%s):\n%s", name, k.LogPath(name), tailFile(k.LogPath(name), 30))
		}
	}
	k.mu.Lock()
	comps := k.comps
	k.comps = nil
	k.mu.Unlock()
	for i := len(comps) - 1; i >= 0; i-- {
		comps[i].stop(15 * time.Second)
	}
	return nil
}

// removeHostState runs last in the containerd's Cleanup, once every
// process of the instance is gone: it removes what lives outside its Dir,
// the cgroup root with the kubelet's kubepods tree, the kubelet's log
// symlinks (and their dir, when the kubelet created it), and the pod bridge.
func (k *Cluster) removeHostState() []string {
	problems := removeNodeState(k.C.Dir)
	if k.madeLogLinkDir {
		os.Remove(containerLogLinks) // only when empty: another kubelet may use it since
	}
	return problems
}

// removeNodeState removes the cgroup root, the container log symlinks and
// the bridge of the cluster
// whose containerd lived in dir, and reports what it could not remove.
// The stale sweep calls it too: both names derive from dir.
func removeNodeState(dir string) []string {
	problems := removeCgroupTree("/" + filepath.Base(dir))
	for _, l := range logSymlinksInto(dir) {
		if err := os.Remove(l); err != nil && !os.IsNotExist(err) {
			problems = append(problems, err.Error())
		}
	}
	if err := deleteLink(bridgeName(dir)); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// cgroupMounts returns the mount points of every cgroup hierarchy (v1 and
// the v2 one of a hybrid setup).
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fs) < 1 || (fs[0] != "cgroup" && fs[0] != "cgroup2") {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	return out
}

// createCgroupRoot creates root in every v1 hierarchy. A new cpuset cgroup
// starts with no CPUs and memory nodes: it gets its parent's.
func createCgroupRoot(root string) error {
	for _, mp := range cgroupMounts() {
		if _, err := os.Stat(filepath.Join(mp, "cgroup.controllers")); err == nil {
			continue // the v2 hierarchy: the kubelet on v1 does not use it
		}
		dir := filepath.Join(mp, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(mp, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return fmt.Errorf("cgroup root %s: %w", f, err)
			}
		}
	}
	return nil
}

// removeCgroupTree removes root and every cgroup below it in every
// hierarchy, deepest first, killing processes still in them; it returns
// the cgroups that remain.
func removeCgroupTree(root string) []string {
	var left []string
	for _, mp := range cgroupMounts() {
		top := filepath.Join(mp, root)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		for _, dir := range cgroupDirs(top) {
			if err := removeCgroup(dir); err != nil {
				left = append(left, "cgroup "+dir+": "+err.Error())
			}
		}
	}
	return left
}

// cgroupDirs returns the directories of the tree at top, deepest first.
func cgroupDirs(top string) []string {
	var dirs []string
	filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// removeCgroup kills the processes in dir and removes it, retrying for a
// few seconds while they exit.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, pid := range cgroupProcs(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		err := syscall.Rmdir(dir)
		if err == nil || os.IsNotExist(err) || time.Now().After(deadline) {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func cgroupProcs(dir string) []int {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// containerLogLinks is where the kubelet links every container's log, for
// log collectors that predate pod log dirs.
const containerLogLinks = "/var/log/containers"

// logSymlinksInto returns the links in containerLogLinks to files under dir.
func logSymlinksInto(dir string) []string {
	links, _ := filepath.Glob(filepath.Join(containerLogLinks, "*"))
	var out []string
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dir+"/") {
			out = append(out, l)
		}
	}
	return out
}

// deleteLink deletes network interface name when it exists.
func deleteLink(name string) error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete link %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PodLeftovers lists what remains on the node of pods that are gone: shims
// of the node's containerd and their sockets, CRI sandboxes, task bundles,
// runc containers and mounts under the containerd's Dir, the kubelet's log
// symlinks to files there, and pod cgroups
// below the kubelet's kubepods tree in any hierarchy. Empty means clean.
// The kubelet removes a deleted pod's cgroups some seconds after the pod
// object is gone, its sandboxes and log links in its once-a-minute
// container garbage collection: callers poll.
func (k *Cluster) PodLeftovers() []string {
	var out []string
	for _, rt := range []string{"runc", "watch"} {
		for _, pid := range k.C.ShimPids(rt) {
			out = append(out, fmt.Sprintf("%s shim pid %d", rt, pid))
		}
	}
	out = append(out, existing(shimSocketsOf(k.C.Dir))...)
	if ids, err := k.C.Crictl("pods", "--quiet"); err != nil {
		out = append(out, "crictl pods: "+err.Error())
	} else if s := strings.Fields(ids); len(s) > 0 {
		out = append(out, "CRI sandboxes "+strings.Join(s, " "))
	}
	for _, b := range k.C.Bundles("k8s.io") {
		out = append(out, "task bundle "+b)
	}
	for _, rc := range runcContainersUnder(k.C.Dir) {
		out = append(out, "runc container "+rc.String())
	}
	for _, mp := range mountsUnder(k.C.Dir) {
		if mp != k.path("kubelet") { // the kubelet makes its root dir a shared mount
			out = append(out, "mount "+mp)
		}
	}
	for _, l := range logSymlinksInto(k.C.Dir) {
		out = append(out, "log symlink "+l)
	}
	for _, mp := range cgroupMounts() {
		for _, dir := range cgroupDirs(filepath.Join(mp, k.CgroupRoot, "kubepods")) {
			if strings.HasPrefix(filepath.Base(dir), "pod") {
				out = append(out, "cgroup "+dir)
			}
		}
	}
	return out
}
