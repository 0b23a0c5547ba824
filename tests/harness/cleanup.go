//go:build e2e

package harness

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FailureLogDir keeps the whole containerd log of every failed test (of
// every test with KeepLogsEnv=1), under a directory named for the test and
// the time: CI prints only a part of the output, and its machine is the
// one we work on.
const FailureLogDir = "/var/tmp/watch-e2e-failures"

// KeepLogsEnv set to 1 keeps the containerd log of passing tests too.
const KeepLogsEnv = "WATCH_E2E_KEEP_LOGS"

// keptLogs is how many logs FailureLogDir keeps: the oldest go first.
const keptLogs = 50

// cleanupForTest is registered with t.Cleanup: it dumps containerd's log
// tail when the test failed and keeps the whole log, then removes
// everything.
func (c *Containerd) cleanupForTest() {
	if c.t.Failed() {
		c.t.Logf("containerd %s log tail (%s):\n%s", c.Version, c.LogPath(), c.LogTail(60))
	}
	if c.t.Failed() || os.Getenv(KeepLogsEnv) == "1" {
		if kept, err := c.keepLog(); err != nil {
			c.t.Logf("keep containerd log: %v", err)
		} else {
			c.t.Logf("whole containerd log kept in %s", kept)
		}
	}
	for _, problem := range c.Cleanup() {
		c.t.Errorf("cleanup: %s", problem)
	}
}

// keepLog copies containerd's log to FailureLogDir.
func (c *Containerd) keepLog() (string, error) {
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(c.t.Name(), "_")
	dir := filepath.Join(FailureLogDir, time.Now().UTC().Format("20060102-150405")+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	data, err := os.ReadFile(c.LogPath())
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "containerd.log")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return "", err
	}
	pruneKeptLogs()
	return dst, nil
}

// pruneKeptLogs removes all but the newest keptLogs directories of
// FailureLogDir (their names start with the time, so they sort by it).
func pruneKeptLogs() {
	entries, err := os.ReadDir(FailureLogDir)
	if err != nil {
		return
	}
	for len(entries) > keptLogs {
		_ = os.RemoveAll(filepath.Join(FailureLogDir, entries[0].Name()))
		entries = entries[1:]
	}
}

// Cleanup removes all pods, containers and tasks, stops containerd, kills
// leftover shims and containers, unmounts everything under Dir and removes
// it. It returns what could not be cleaned. A second call returns nil once
// the first has finished: a test failing because Ctrl-C killed its crictl
// must not exit while the signal handler's cleanup is still under way.
func (c *Containerd) Cleanup() []string {
	var problems []string
	c.cleanOnce.Do(func() { problems = c.cleanup() })
	return problems
}

func (c *Containerd) cleanup() []string {
	c.mu.Lock()
	c.cleaned = true // StartAgain refuses from now on
	before, after := c.before, c.after
	c.mu.Unlock()
	defer unregister(c)
	problems := runHooks(before)
	if c.Running() {
		c.removeAll()
	}
	fifos := c.execFifoLeftovers() // before cleanDir removes them
	if err := c.Stop(); err != nil {
		c.t.Logf("stop containerd: %v", err)
	}
	sockets := shimSocketsOf(c.Dir)
	cleanDir(c.Dir)
	problems = append(problems, c.Leftovers()...)
	problems = append(problems, existing(sockets)...)
	problems = append(problems, fifos...)
	return append(problems, runHooks(after)...)
}

// runHooks runs hooks, the last registered first, and collects their problems.
func runHooks(hooks []func() []string) []string {
	var problems []string
	for i := len(hooks) - 1; i >= 0; i-- {
		problems = append(problems, hooks[i]()...)
	}
	return problems
}

// removeAll removes CRI pods and containers, then every task and container
// in every namespace.
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
		c.CtrNS(ns, "tasks", "kill", "--all", "--signal", "SIGKILL", id)
		c.CtrNS(ns, "tasks", "delete", "--force", id)
	}
	ctrs, _ := c.CtrNS(ns, "containers", "list", "--quiet")
	for _, id := range strings.Fields(ctrs) {
		c.CtrNS(ns, "containers", "delete", id)
	}
}

// cleanDir brute-forces away whatever still lives under dir: processes
// referencing it, runc containers bundled in it, mounts, then dir itself.
func cleanDir(dir string) {
	killProcesses(dir)
	deleteRuncContainers(dir)
	killProcesses(dir)
	for _, p := range shimSocketsOf(dir) {
		os.Remove(p)
	}
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

// shimSocketRE matches the shim socket addresses containerd logs.
var shimSocketRE = regexp.MustCompile(`unix://(/run/containerd/s/[0-9a-f]{64})`)

// shimSocketsOf returns the shim sockets the instance in dir used: those
// named in its log and those derived from its task bundles.
func shimSocketsOf(dir string) []string {
	set := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(dir, "containerd.log")); err == nil {
		for _, m := range shimSocketRE.FindAllStringSubmatch(string(data), -1) {
			set[m[1]] = true
		}
	}
	bundles, _ := filepath.Glob(filepath.Join(dir, "state", "io.containerd.runtime.v2.task", "*", "*"))
	for _, b := range bundles {
		ns, id := filepath.Base(filepath.Dir(b)), filepath.Base(b)
		set[shimSocket(filepath.Join(dir, socketName), ns, id, false)] = true
		set[shimSocket(filepath.Join(dir, socketName), ns, id, true)] = true
	}
	var out []string
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// ShimSockets returns the shim sockets (in /run/containerd/s) this instance
// has used so far, whether or not they still exist.
func (c *Containerd) ShimSockets() []string { return shimSocketsOf(c.Dir) }

// existing returns "socket <path>" for each of paths that exists.
func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, "socket "+p)
		}
	}
	return out
}

// Leftovers lists what remains of this instance besides a running
// containerd and its own sockets: processes referencing Dir,
// runc containers bundled under it, mounts and sockets under it, shim
// sockets it used (known while Dir exists; Cleanup checks them too), and
// fifo directories created in ctr's shared default directory since Start
// (see sharedFifoLeftovers). Cleanup adds the exec fifo directories left
// in FifoDir (see execFifoLeftovers). Empty means clean.
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
	running := c.Running()
	for _, s := range socketsUnder(c.Dir) {
		if !running || (s != c.Address && s != c.Address+".ttrpc") {
			out = append(out, "socket "+s)
		}
	}
	out = append(out, existing(shimSocketsOf(c.Dir))...)
	return append(out, c.sharedFifoLeftovers()...)
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
