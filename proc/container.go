package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/proc/cgroup"
)

// Event topics published by containers.
const (
	TopicCreate      = "/tasks/create"
	TopicStart       = "/tasks/start"
	TopicDelete      = "/tasks/delete"
	TopicExecAdded   = "/tasks/exec-added"
	TopicExecStarted = "/tasks/exec-started"
	TopicPaused      = "/tasks/paused"
	TopicResumed     = "/tasks/resumed"
	TopicCheckpoint  = "/tasks/checkpointed"
)

// CreateConfig is what Create needs to make a container.
type CreateConfig struct {
	ID        string
	Namespace string
	Bundle    string
	Rootfs    []mount.Mount
	Stdio     Stdio
	Options   *options.Options
	// Identity is the task's place in its pod (filled from the spec's
	// annotations by Create when left empty).
	Identity exitmon.Identity
}

// Container is one task of the pod: its init, its execs and its runc
// state. It is safe for concurrent use.
type Container struct {
	ID        string
	Namespace string
	Bundle    string
	Identity  exitmon.Identity

	mon    *exitmon.Monitor // reaps what the container launches
	runc   *runc.Runc
	opts   *options.Options
	domain *exitmon.Domain
	rootfs string
	cg     *cgroup.Group
	init   *Process

	// ownPidNS: the spec gives the container its own pid namespace.
	ownPidNS bool

	mu    sync.Mutex
	execs map[string]*Process
}

// Create runs `runc create` for a new container and tracks its init.
func Create(ctx context.Context, m *exitmon.Monitor, cfg CreateConfig) (_ *Container, retErr error) {
	spec, err := readSpec(cfg.Bundle)
	if err != nil {
		return nil, err
	}
	opts := cfg.Options
	if opts == nil {
		opts = &options.Options{}
	}
	c := &Container{
		ID: cfg.ID, Namespace: cfg.Namespace, Bundle: cfg.Bundle,
		Identity: identityOf(cfg.ID, cfg.Namespace, spec.Annotations),
		runc:     newRunc(cfg.Namespace, cfg.Bundle, opts),
		opts:     opts, ownPidNS: ownPidNamespace(spec), execs: map[string]*Process{},
		mon: m,
	}
	if err := saveRunc(cfg.Bundle, opts); err != nil {
		return nil, err
	}
	if err := c.mountRootfs(cfg.Rootfs); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			c.unmountRootfs(ctx)
		}
	}()
	if c.domain, err = m.NewDomain(cfg.Bundle, c.Identity); err != nil {
		return nil, err
	}
	c.init = &Process{c: c, stdio: cfg.Stdio, exit: c.domain.Init(), state: stateCreated, pidfd: -1}
	if err := c.createInit(ctx, cfg); err != nil {
		c.domain.Abandon()
		return nil, err
	}
	c.domain.Publish(TopicCreate, &events.TaskCreate{
		ContainerID: c.ID, Bundle: c.Bundle, Rootfs: mount.ToProto(cfg.Rootfs),
		IO:  &events.TaskIO{Stdin: cfg.Stdio.Stdin, Stdout: cfg.Stdio.Stdout, Stderr: cfg.Stdio.Stderr, Terminal: cfg.Stdio.Terminal},
		Pid: uint32(c.init.exit.Pid()),
	})
	return c, nil
}

func (c *Container) createInit(ctx context.Context, cfg CreateConfig) error {
	p := c.init
	io, err := newPIO(cfg.Stdio, int(c.opts.IoUid), int(c.opts.IoGid))
	if err != nil {
		return err
	}
	pidFile := filepath.Join(c.Bundle, "init.pid")
	l, err := c.launch(ctx, pidFile, func(sock runc.PidfdSocket) error {
		return c.runc.Create(ctx, c.ID, c.Bundle, &runc.CreateOpts{
			IO: io.runcIO, PidFile: pidFile, ConsoleSocket: io.consoleSocket(), PidfdSocket: sock,
			NoPivot: c.opts.NoPivotRoot, NoNewKeyring: c.opts.NoNewKeyring,
		})
	}, c.forceDelete)
	if err != nil {
		io.Close(ctx)
		return c.runcError(err)
	}
	p.launched(l.pidfd, io)
	if c.cg, err = cgroup.Load(l.pid); err != nil {
		log.G(ctx).WithError(err).Warn("load cgroup: stats and OOM detection unavailable")
	} else {
		c.domain.SetOOMCheck(c.cg.OOMKilled)
	}
	if !c.ownPidNS {
		c.domain.SetInitExitHook(c.killRemaining)
	}
	p.exit.Watch(l.tok, l.pid, l.pidfd)
	if err := io.attach(ctx, c.mon, c.loggerEnv()); err != nil {
		c.forceDelete(ctx)
		return err
	}
	io.closeAfterStart()
	return nil
}

// loggerEnv is the whole environment of a binary:// logger: which
// container's output it gets.
func (c *Container) loggerEnv() []string {
	return []string{"CONTAINER_ID=" + c.ID, "CONTAINER_NAMESPACE=" + c.Namespace}
}

// forceDelete removes the container from runc, killing its init.
func (c *Container) forceDelete(ctx context.Context) {
	if err := c.runc.Delete(ctx, c.ID, &runc.DeleteOpts{Force: true}); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.ID).Warn("runc delete --force")
	}
}

// killRemaining kills what is left of a container that shares its pid
// namespace once its init exited.
func (c *Container) killRemaining() {
	ctx := context.Background()
	if err := c.runc.Kill(ctx, c.ID, 9, &runc.KillOpts{All: true}); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.ID).Debug("kill remaining processes")
	}
}

// Init returns the container's init process.
func (c *Container) Init() *Process { return c.init }

// Process returns the init ("") or the exec execID.
func (c *Container) Process(execID string) (*Process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in %q: %w", execID, c.ID, errdefs.ErrNotFound)
	}
	return p, nil
}

// Start starts the init or an exec and returns its pid.
func (c *Container) Start(ctx context.Context, execID string) (int, error) {
	p, err := c.Process(execID)
	if err != nil {
		return 0, err
	}
	next, err := p.beginStart()
	if err != nil {
		return 0, err
	}
	if execID != "" {
		pid, err := c.startExec(ctx, p)
		if err != nil {
			p.endStart(stateCreated)
			return 0, err
		}
		p.endStart(next)
		return pid, nil
	}
	p.exit.BeginStart()
	if err := c.runc.Start(ctx, c.ID); err != nil {
		p.endStart(stateCreated)
		p.exit.StartFailed()
		return 0, c.runcError(err)
	}
	p.endStart(next)
	pid := p.exit.Pid()
	p.exit.Started(TopicStart, &events.TaskStart{ContainerID: c.ID, Pid: uint32(pid)})
	return pid, nil
}

// Kill signals the init (all processes with all) or an exec.
func (c *Container) Kill(ctx context.Context, execID string, sig uint32, all bool) error {
	p, err := c.Process(execID)
	if err != nil {
		return err
	}
	if _, err := p.check(opKill); err != nil {
		return err
	}
	if execID != "" {
		return p.signal(int(sig))
	}
	if p.exit.Reaped() && !all {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if err := c.runc.Kill(ctx, c.ID, int(sig), &runc.KillOpts{All: all}); err != nil {
		err = c.runcError(err)
		if p.exit.Reaped() || goneError(err) {
			return fmt.Errorf("process already finished: %v: %w", err, errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

// goneError reports whether the OCI runtime refused a kill because the
// process is gone: it exited but the exit monitor has not reaped it yet.
// runc says "container not running"; crun "No such process".
func goneError(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"no such process", "container not running", "process already finished"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Delete removes a stopped init (and the container) or an exec, and
// returns how it ended.
func (c *Container) Delete(ctx context.Context, execID string) (exitmon.Status, error) {
	p, err := c.Process(execID)
	if err != nil {
		return exitmon.Status{}, err
	}
	if _, err := p.check(opDelete); err != nil {
		return exitmon.Status{}, err
	}
	if execID != "" {
		return c.deleteExec(ctx, p)
	}
	if !p.exit.Reaped() {
		// Created but never started: runc delete --force kills it.
		if err := c.runc.Delete(ctx, c.ID, &runc.DeleteOpts{Force: true}); err != nil {
			return exitmon.Status{}, c.runcError(err)
		}
	}
	st, err := p.Wait(ctx)
	if err != nil {
		return exitmon.Status{}, err
	}
	if err := c.runc.Delete(ctx, c.ID, &runc.DeleteOpts{Force: true}); err != nil && !isNotExist(err) {
		log.G(ctx).WithError(err).Warn("runc delete")
	}
	p.set(stateDeleted)
	p.release(ctx)
	c.closeExecIO(ctx)
	c.unmountRootfs(ctx)
	c.domain.Delete(TopicDelete, &events.TaskDelete{
		ContainerID: c.ID, Pid: uint32(st.Pid), ExitStatus: uint32(st.Code), ExitedAt: timestamppb.New(st.ExitedAt),
	})
	return st, nil
}

// Pause freezes the container.
func (c *Container) Pause(ctx context.Context) error {
	next, err := c.init.check(opPause)
	if err != nil {
		return err
	}
	if err := c.runc.Pause(ctx, c.ID); err != nil {
		return c.runcError(err)
	}
	c.init.set(next)
	c.domain.Publish(TopicPaused, &events.TaskPaused{ContainerID: c.ID})
	return nil
}

// Resume thaws the container.
func (c *Container) Resume(ctx context.Context) error {
	next, err := c.init.check(opResume)
	if err != nil {
		return err
	}
	if err := c.runc.Resume(ctx, c.ID); err != nil {
		return c.runcError(err)
	}
	c.init.set(next)
	c.domain.Publish(TopicResumed, &events.TaskResumed{ContainerID: c.ID})
	return nil
}

// Update applies new resource limits (JSON LinuxResources).
func (c *Container) Update(ctx context.Context, resources []byte) error {
	if _, err := c.init.check(opUpdate); err != nil {
		return err
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(resources, &r); err != nil {
		return fmt.Errorf("resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := c.runc.Update(ctx, c.ID, &r); err != nil {
		return c.runcError(err)
	}
	return nil
}

// Stats returns the container's cgroup metrics (*v1.Metrics or *v2.Metrics).
func (c *Container) Stats(ctx context.Context) (*anypb.Any, error) {
	if _, err := c.init.check(opStats); err != nil {
		return nil, err
	}
	if c.cg == nil {
		return nil, fmt.Errorf("container cgroup unknown: %w", errdefs.ErrNotImplemented)
	}
	return c.cg.Stats()
}

// PidInfo is one process of a container.
type PidInfo struct {
	Pid    int
	ExecID string
}

// Pids lists the container's processes. A container whose init exited but
// that is not deleted still reports its init pid, so containerd's restart
// recovery does not take it for a leaked shim and lose its exit status.
func (c *Container) Pids(ctx context.Context) ([]PidInfo, error) {
	if c.init.exit.Reaped() {
		return []PidInfo{{Pid: c.init.exit.Pid()}}, nil
	}
	pids, err := c.runc.Ps(ctx, c.ID)
	if err != nil {
		return nil, c.runcError(err)
	}
	byPid := map[int]string{}
	c.mu.Lock()
	for id, p := range c.execs {
		if pid := p.exit.Pid(); pid > 0 {
			byPid[pid] = id
		}
	}
	c.mu.Unlock()
	out := make([]PidInfo, 0, len(pids))
	for _, pid := range pids {
		out = append(out, PidInfo{Pid: pid, ExecID: byPid[pid]})
	}
	return out, nil
}

// Checkpoint dumps the container with criu into path.
func (c *Container) Checkpoint(ctx context.Context, path string, o *options.CheckpointOptions) error {
	if _, err := c.init.check(opCkpt); err != nil {
		return err
	}
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("checkpoint needs criu, which is not installed: %w", errdefs.ErrFailedPrecondition)
	}
	if o == nil {
		o = &options.CheckpointOptions{}
	}
	actions := []runc.CheckpointAction{}
	if !o.Exit {
		actions = append(actions, runc.LeaveRunning)
	}
	err := c.runc.Checkpoint(ctx, c.ID, &runc.CheckpointOpts{
		ImagePath: path, WorkDir: o.WorkPath, AllowOpenTCP: o.OpenTcp, AllowExternalUnixSockets: o.ExternalUnixSockets,
		AllowTerminal: o.Terminal, FileLocks: o.FileLocks, EmptyNamespaces: o.EmptyNamespaces,
	}, actions...)
	if err != nil {
		return c.runcError(err)
	}
	c.domain.Publish(TopicCheckpoint, &events.TaskCheckpointed{ContainerID: c.ID, Checkpoint: path})
	return nil
}

// runcError adds runc's own log line to err.
func (c *Container) runcError(err error) error {
	if msg := lastRuncLog(filepath.Join(c.Bundle, "log.json")); msg != "" {
		return fmt.Errorf("runc: %s: %w", msg, err)
	}
	return fmt.Errorf("runc: %w", err)
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errdefs.IsNotFound(err)
}

// closeExecIO releases the stdio and pidfds of the execs nobody deleted
// (CRI forgets the execs it started before a containerd restart). Their
// drains run side by side: each may wait for its reader up to drainTimeout.
func (c *Container) closeExecIO(ctx context.Context) {
	c.mu.Lock()
	left := make([]*Process, 0, len(c.execs))
	for _, p := range c.execs {
		left = append(left, p)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range left {
		p.closePidfd()
		if io := p.stdioOf(); io != nil {
			wg.Add(1)
			go func() { defer wg.Done(); io.Close(ctx) }()
		}
	}
	wg.Wait()
}
