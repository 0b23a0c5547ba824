//go:build e2e

package harness

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// sharedFifoDir is ctr's default fifo directory (containerd's
// defaults.DefaultFIFODir on Linux), shared by every client of every
// containerd on the machine. ctr never removes the fifos of a task started
// with `run -d` unless the task is deleted through ctr again, nor those of
// an exec whose ctr did not finish: they pile up there.
const sharedFifoDir = "/run/containerd/fifo"

// FifoDir returns the directory under Dir where this instance's ctr calls
// create their stdio fifos: init/ for `run` and `tasks start`, exec/ for
// `tasks exec`. It goes with Dir when the test ends.
func (c *Containerd) FifoDir() string { return filepath.Join(c.Dir, "fifo") }

// withFifoDir returns ctr's args with --fifo-dir inserted right after the
// subcommand when it is one that creates fifos: run, tasks start and tasks
// exec (ctr 2.2 to 2.4 take the flag there only). An exec with --log-uri
// gets none: it creates no fifo and ctr refuses both flags together.
func (c *Containerd) withFifoDir(args []string) []string {
	at, kind := fifoFlagAt(args)
	if at == 0 || (kind == "exec" && hasFlag(args, "--log-uri")) {
		return args
	}
	out := slices.Clone(args[:at])
	out = append(out, "--fifo-dir", filepath.Join(c.FifoDir(), kind))
	return append(out, args[at:]...)
}

// fifoFlagAt returns where --fifo-dir goes in args and which fifo subdir
// it names; 0 when the command creates no fifo.
func fifoFlagAt(args []string) (int, string) {
	switch {
	case len(args) >= 1 && args[0] == "run":
		return 1, "init"
	case len(args) >= 2 && slices.Contains([]string{"tasks", "task", "t"}, args[0]):
		switch args[1] {
		case "start":
			return 2, "init"
		case "exec":
			return 2, "exec"
		}
	}
	return 0, ""
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// execFifoLeftovers waits up to 5 s for the exec fifo directories of this
// instance to go, then returns "exec fifo dir <path> (<fifos>)" for each
// left: ctr removes an exec's fifos once the exec has exited and been
// deleted, so one left means a ctr that did not finish (killed, hung, or
// its exec never reported). Init fifos of detached tasks are expected
// (ctr leaves them) and go with Dir. So are an exec's when containerd was
// stopped during the test: ctr loses its call and exits without removing
// them (they go with Dir too); nil then.
func (c *Containerd) execFifoLeftovers() []string {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return nil
	}
	dir := filepath.Join(c.FifoDir(), "exec")
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := fifoDirs(dir, nil)
		if len(left) == 0 || time.Now().After(deadline) {
			return prefixed("exec fifo dir ", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sharedFifoLeftovers returns "shared fifo dir <path> (<fifos>)" for each
// directory created in sharedFifoDir since Start: none of this instance's
// ctr calls may use it. It returns nil when another containerd runs on the
// machine, whose clients may create them: they cannot be told apart.
func (c *Containerd) sharedFifoLeftovers() []string {
	left := fifoDirs(sharedFifoDir, c.sharedFifosBefore)
	if len(left) == 0 || c.otherContainerd() {
		return nil
	}
	return prefixed("shared fifo dir ", left)
}

// sharedFifoNames returns the entries of sharedFifoDir.
func sharedFifoNames() map[string]bool {
	entries, _ := os.ReadDir(sharedFifoDir)
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

// fifoDirs returns "<dir>/<entry> (<fifo names>)" for each entry of dir
// not in skip, sorted.
func fifoDirs(dir string, skip map[string]bool) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if skip[e.Name()] {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fifos, _ := os.ReadDir(p)
		var names []string
		for _, f := range fifos {
			names = append(names, f.Name())
		}
		out = append(out, p+" ("+strings.Join(names, " ")+")")
	}
	sort.Strings(out)
	return out
}

// SharedFifosAttributable reports whether Leftovers can tell the fifo
// dirs this instance's ctr calls made in ctr's shared default directory:
// no other containerd runs on the machine, nor ran when it started.
func (c *Containerd) SharedFifosAttributable() bool { return !c.otherContainerd() }

// otherContainerd reports whether a containerd other than this instance's
// runs, or ran when it started.
func (c *Containerd) otherContainerd() bool {
	if c.otherAtStart {
		return true
	}
	for _, p := range processes() {
		if p.exe == "containerd" && !p.references(c.Dir) {
			return true
		}
	}
	return false
}

func prefixed(prefix string, items []string) []string {
	var out []string
	for _, s := range items {
		out = append(out, prefix+s)
	}
	return out
}
