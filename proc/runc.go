package proc

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/containerd/containerd/api/types/runc/options"
	runc "github.com/containerd/go-runc"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// defaultRuncRoot is where runc keeps container state, per namespace.
const defaultRuncRoot = "/run/containerd/runc"

// ReapRuncThrough makes every runc invocation reap through m: go-runc
// takes its ProcessMonitor only as a package global, runc.Monitor. Call it
// once, before any container is created. Everything else in proc reaches
// the exit monitor through the one Create was given.
func ReapRuncThrough(m *exitmon.Monitor) {
	runc.Monitor = runcReaper{m}
}

// runcReaper adapts exitmon to go-runc's ProcessMonitor.
type runcReaper struct{ m *exitmon.Monitor }

func (r runcReaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	return r.start(c, func() {})
}

// StartLocked is what go-runc calls for runc with a parent-death signal
// (all of the shim's). It locks no thread: see runcThreads.
func (r runcReaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	runcThreads.RLock()
	return r.start(c, runcThreads.RUnlock)
}

// start starts c, tells its pidfd socket, if any, which process c is, and
// turns its exit into go-runc's; done runs once c has exited or failed to
// start.
func (r runcReaper) start(c *exec.Cmd, done func()) (chan runc.Exit, error) {
	ch, err := r.m.StartCmd(c)
	if err != nil {
		done()
		return nil, err
	}
	runcStarted(c)
	out := make(chan runc.Exit, 1)
	go func() {
		st := <-ch
		done()
		out <- runc.Exit{Timestamp: st.ExitedAt, Pid: st.Pid, Status: st.Code}
		close(out)
	}()
	return out, nil
}

func (runcReaper) Wait(c *exec.Cmd, ch chan runc.Exit) (int, error) {
	e := <-ch
	_ = c.Wait() // already reaped: this only flushes output copies
	return e.Status, nil
}

// newRunc returns the runc client for a container in namespace ns.
func newRunc(ns, bundle string, opts *options.Options) *runc.Runc {
	root := opts.GetRoot()
	if root == "" {
		root = defaultRuncRoot
	}
	return &runc.Runc{
		Command:       opts.GetBinaryName(),
		Root:          filepath.Join(root, ns),
		Log:           filepath.Join(bundle, "log.json"),
		LogFormat:     runc.JSON,
		PdeathSignal:  syscall.SIGKILL,
		SystemdCgroup: opts.GetSystemdCgroup(),
	}
}

// runcFile keeps, in the bundle, how runc was invoked, so `shim delete`
// can clean up after the server died.
const runcFile = "watch-runc.json"

type savedRunc struct {
	Binary        string `json:"binary,omitempty"`
	Root          string `json:"root,omitempty"`
	SystemdCgroup bool   `json:"systemd_cgroup,omitempty"`
}

func saveRunc(bundle string, o *options.Options) error {
	b, err := json.Marshal(savedRunc{Binary: o.GetBinaryName(), Root: o.GetRoot(), SystemdCgroup: o.GetSystemdCgroup()})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, runcFile), b, 0o600)
}

// RuncFor returns the runc client a container in bundle was created with.
func RuncFor(ns, bundle string) *runc.Runc {
	var s savedRunc
	if b, err := os.ReadFile(filepath.Join(bundle, runcFile)); err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return newRunc(ns, bundle, &options.Options{BinaryName: s.Binary, Root: s.Root, SystemdCgroup: s.SystemdCgroup})
}

// InitPid returns the init pid runc recorded in bundle.
func InitPid(bundle string) (int, error) {
	return readPid(filepath.Join(bundle, "init.pid"))
}
