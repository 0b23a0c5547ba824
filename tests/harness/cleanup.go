//go:build e2e

package harness

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cleanupForTest is registered with t.Cleanup: it dumps containerd's log
// tail when the test failed, then removes everything.
func (c *Containerd) cleanupForTest() {
	if c.t.Failed() {
		c.t.Logf("containerd %s log tail (%s):\n%s", c.Version, c.LogPath(), c.LogTail(60))
	}
	for _, problem := range c.Cleanup() {
		c.t.Errorf("cleanup: %s", problem)
	}
}

// Cleanup removes all pods, containers and tasks, stops containerd, kills
// leftover shims and containers, unmounts everything under Dir and removes
// it. It returns what could not be cleaned; calling it again is a no-op.
func (c *Containerd) Cleanup() []string {
	c.mu.Lock()
	if c.cleaned {
		c.mu.Unlock()
		return nil
	}
	c.cleaned = true
	c.mu.Unlock()
	defer unregister(c)
	if c.Running() {
		c.removeAll()
	}
	if err := c.Stop(); err != nil {
		c.t.Logf("stop containerd: %v", err)
	}
	cleanDir(c.Dir)
	c.removeShimSockets()
	return c.Leftovers()
}

// removeAll removes CRI pods and containers, then every task and container
// in every namespace, remembering their IDs for the shim socket check.
func (c *Containerd) removeAll() {
	c.Crictl("rm", "--force", "--all")
	c.Crictl("rmp", "--force", "--all")
	out, _ := c.CtrNS("default", "namespaces", "list", "--quiet")
	for _, ns := range strings.Fields(out) {
		c.removeNamespace(ns)
	}
}

func (c *Containerd) removeNamespace(ns string) {
	tasks, _ := c.CtrNS(ns, "tasks", "list", "--quiet")
	for _, id := range strings.Fields(tasks) {
		c.remember(ns, id)
		c.CtrNS(ns, "tasks", "kill", "--all", "--signal", "SIGKILL", id)
		c.CtrNS(ns, "tasks", "delete", "--force", id)
	}
	ctrs, _ := c.CtrNS(ns, "containers", "list", "--quiet")
	for _, id := range strings.Fields(ctrs) {
		c.remember(ns, id)
		c.CtrNS(ns, "containers", "delete", id)
	}
}

func (c *Containerd) remember(ns, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[[2]string{ns, id}] = true
}

// cleanDir brute-forces away whatever still lives under dir: processes
// referencing it, runc containers bundled in it, mounts, then dir itself.
func cleanDir(dir string) {
	killProcesses(dir)
	deleteRuncContainers(dir)
	killProcesses(dir)
	removeBundleShimSockets(dir)
	unmountAll(dir)
	if err := os.RemoveAll(dir); err != nil {
		unmountAll(dir)
		os.RemoveAll(dir)
	}
}

// killProcesses SIGKILLs every process referencing dir and waits up to 5 s
// for them to vanish.
func killProcesses(dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := processesUnder(dir)
		if len(procs) == 0 || time.Now().After(deadline) {
			return
		}
		for _, p := range procs {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unmountAll lazily unmounts every mount point under dir, deepest first.
func unmountAll(dir string) {
	for i := 0; i < 5; i++ {
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			return
		}
		for _, mp := range mounts {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
}

// shimSocket returns the path containerd's pkg/shim derives for the shim
// socket of container id in namespace ns of the containerd at address
// (debug selects the debug socket).
func shimSocket(address, ns, id string, debug bool) string {
	p := filepath.Join(address, ns, id)
	if debug {
		p = filepath.Join(p, "debug")
	}
	return fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(p)))
}

func (c *Containerd) shimSockets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for key := range c.seen {
		for _, debug := range []bool{false, true} {
			p := shimSocket(c.Address, key[0], key[1], debug)
			if _, err := os.Lstat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// removeBundleShimSockets removes the shim sockets of the task bundles in
// the state dir of the instance in dir.
func removeBundleShimSockets(dir string) {
	bundles, _ := filepath.Glob(filepath.Join(dir, "state", "io.containerd.runtime.v2.task", "*", "*"))
	for _, b := range bundles {
		ns, id := filepath.Base(filepath.Dir(b)), filepath.Base(b)
		os.Remove(shimSocket(filepath.Join(dir, socketName), ns, id, false))
		os.Remove(shimSocket(filepath.Join(dir, socketName), ns, id, true))
	}
}

func (c *Containerd) removeShimSockets() {
	for _, p := range c.shimSockets() {
		os.Remove(p)
	}
}

// Leftovers lists what remains of this instance: processes referencing Dir,
// runc containers bundled under it, mounts and sockets under it, and shim
// sockets of containers it ran. Empty means clean.
func (c *Containerd) Leftovers() []string {
	var out []string
	for _, p := range processesUnder(c.Dir) {
		if p.pid != c.Pid() {
			out = append(out, "process "+p.String())
		}
	}
	for _, rc := range runcContainersUnder(c.Dir) {
		out = append(out, "runc container "+rc.String())
	}
	for _, mp := range mountsUnder(c.Dir) {
		out = append(out, "mount "+mp)
	}
	for _, s := range append(socketsUnder(c.Dir), c.shimSockets()...) {
		out = append(out, "socket "+s)
	}
	return out
}

// socketsUnder returns the unix sockets in the tree at dir.
func socketsUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 {
			out = append(out, p)
		}
		return nil
	})
	return out
}
