package proc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// Exec registers a new exec process; Start runs it.
func (c *Container) Exec(ctx context.Context, execID string, stdio Stdio, spec *specs.Process) error {
	if _, err := c.init.check(opExec); err != nil {
		return err
	}
	if c.init.exit.Reaped() {
		return fmt.Errorf("container %q has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if spec == nil || len(spec.Args) == 0 {
		return fmt.Errorf("exec %q: process spec has no args: %w", execID, errdefs.ErrInvalidArgument)
	}
	exit, err := c.domain.AddExec(execID)
	if err != nil {
		return fmt.Errorf("exec %q in %q: %w", execID, c.ID, err)
	}
	p := &Process{c: c, execID: execID, stdio: stdio, spec: spec, exit: exit, state: stateCreated, pidfd: -1}
	c.mu.Lock()
	c.execs[execID] = p
	c.mu.Unlock()
	c.domain.Publish(TopicExecAdded, &events.TaskExecAdded{ContainerID: c.ID, ExecID: execID})
	return nil
}

func (c *Container) startExec(ctx context.Context, p *Process) (int, error) {
	if c.init.exit.Reaped() {
		return 0, fmt.Errorf("container %q has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	io, err := newPIO(p.stdio, int(c.opts.IoUid), int(c.opts.IoGid))
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(c.Bundle, "exec-"+p.execID+".pid")
	defer os.Remove(pidFile)
	p.exit.BeginStart()
	l, err := c.launch(ctx, pidFile, func(sock runc.PidfdSocket) error {
		return c.runc.Exec(ctx, c.ID, *p.spec, &runc.ExecOpts{
			IO: io.runcIO, PidFile: pidFile, ConsoleSocket: io.consoleSocket(), PidfdSocket: sock, Detach: true,
		})
	}, nil)
	if err != nil {
		p.exit.StartFailed()
		io.Close(ctx)
		return 0, c.runcError(err)
	}
	p.launched(l.pidfd, io)
	p.exit.Watch(l.tok, l.pid, l.pidfd)
	if err := io.attach(ctx, c.mon, c.loggerEnv()); err != nil {
		_ = p.signal(9)
		p.exit.StartFailed()
		return 0, err
	}
	io.closeAfterStart()
	p.exit.Started(TopicExecStarted, &events.TaskExecStarted{ContainerID: c.ID, ExecID: p.execID, Pid: uint32(l.pid)})
	return l.pid, nil
}

func (c *Container) deleteExec(ctx context.Context, p *Process) (exitmon.Status, error) {
	var st exitmon.Status
	if p.exit.Pid() != 0 {
		var err error
		if st, err = p.Wait(ctx); err != nil {
			return st, err
		}
	} else {
		// Never started: whoever waits for it is told it never ran.
		p.exit.Abandon()
	}
	p.set(stateDeleted)
	p.release(ctx)
	c.mu.Lock()
	delete(c.execs, p.execID)
	c.mu.Unlock()
	c.domain.RemoveExec(p.execID)
	return st, nil
}
