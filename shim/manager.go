// Package shim is the shim manager: the `start` action (pod grouping,
// socket, spawning the server), the `delete` action (cleanup after the
// server died, answered from the exit journal) and the plugin that wires
// the task service into containerd's shim framework.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	shimpkg "github.com/containerd/containerd/v2/pkg/shim"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
)

// RuntimeName is the runtime type containerd uses for this shim.
const RuntimeName = "io.containerd.watch.v2"

// GroupAnnotation puts containers in one shim explicitly.
const GroupAnnotation = "io.containerd.watch.v2.group"

// Manager implements the shim framework's Manager.
type Manager struct {
	Version, Revision string
}

// Name returns the runtime name.
func (m *Manager) Name() string { return RuntimeName }

// groupOf picks the shim a container belongs to: our group annotation,
// else its pod's sandbox id, else its own id.
func groupOf(id string, s *specs.Spec) string {
	for _, key := range []string{GroupAnnotation, proc.AnnotationSandboxID} {
		if g := s.Annotations[key]; g != "" {
			return g
		}
	}
	return id
}

// Start finds or starts the shim for the container's group and returns
// its address. It runs in the bundle directory.
func (m *Manager) Start(ctx context.Context, id string, opts shimpkg.StartOpts) (shimpkg.BootstrapParams, error) {
	params := shimpkg.BootstrapParams{Version: 3, Protocol: "ttrpc"}
	spec, err := readSpecFile("config.json")
	if err != nil {
		return params, err
	}
	group := groupOf(id, spec)
	if err := identifiers.Validate(group); err != nil {
		return params, fmt.Errorf("shim group %q: %w", group, err)
	}
	addr, err := shimpkg.SocketAddress(ctx, opts.Address, group, false)
	if err != nil {
		return params, err
	}
	params.Address = addr
	sock, err := listen(addr)
	if errors.Is(err, errServing) {
		return params, nil
	}
	if err != nil {
		return params, err
	}
	// The server keeps serving the socket after start exits: closing our
	// copy must not unlink it.
	sock.SetUnlinkOnClose(false)
	defer sock.Close()
	f, err := sock.File()
	if err != nil {
		return params, err
	}
	defer f.Close()
	if err := m.spawn(ctx, id, addr, opts, f); err != nil {
		_ = shimpkg.RemoveSocket(addr)
		return params, err
	}
	return params, nil
}

var errServing = errors.New("a shim already serves this group")

// listen creates the group's socket, or reports errServing when a live
// shim already holds it. A stale socket is replaced.
func listen(addr string) (*net.UnixListener, error) {
	l, err := shimpkg.NewSocket(addr)
	if err == nil {
		return l, nil
	}
	if !shimpkg.SocketEaddrinuse(err) {
		return nil, err
	}
	if shimpkg.CanConnect(addr) {
		return nil, errServing
	}
	if err := shimpkg.RemoveSocket(addr); err != nil {
		return nil, err
	}
	return shimpkg.NewSocket(addr)
}

// spawn re-executes this binary as the server on the socket f.
func (m *Manager) spawn(ctx context.Context, id, addr string, opts shimpkg.StartOpts, f *os.File) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), socketEnv+"="+addr)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start shim server: %w", err)
	}
	applyShimCgroup(ctx, cmd.Process.Pid)
	if err := shimpkg.AdjustOOMScore(cmd.Process.Pid); err != nil {
		// Without CAP_SYS_RESOURCE this fails; the shim still works.
		log.G(ctx).WithError(err).Warn("adjust shim oom score")
	}
	return cmd.Process.Release()
}

// Stop is the `delete` action: containerd runs it after the server died.
// It removes what is left of the container and reports the journaled exit
// when there is one; 137 only when the exit is unknown and it had to kill.
func (m *Manager) Stop(ctx context.Context, id string) (shimpkg.StopStatus, error) {
	if err := identifiers.Validate(id); err != nil {
		return shimpkg.StopStatus{}, err
	}
	bundle := bundleDir(ctx)
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shimpkg.StopStatus{}, err
	}
	r := proc.RuncFor(ns, bundle)
	if err := r.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil {
		log.G(ctx).WithError(err).Warn("runc delete")
	}
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	if j, err := exitmon.ReadJournal(bundle); err == nil && j.Init != nil {
		return shimpkg.StopStatus{Pid: j.Init.Pid, ExitStatus: j.Init.Code, ExitedAt: j.Init.ExitedAt}, nil
	}
	pid, _ := proc.InitPid(bundle)
	return shimpkg.StopStatus{Pid: pid, ExitStatus: 128 + int(syscall.SIGKILL), ExitedAt: time.Now()}, nil
}

func bundleDir(ctx context.Context) string {
	if o, ok := ctx.Value(shimpkg.OptsKey{}).(shimpkg.Opts); ok && o.BundlePath != "" {
		return o.BundlePath
	}
	wd, _ := os.Getwd()
	return wd
}

func readSpecFile(path string) (*specs.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &s, nil
}
