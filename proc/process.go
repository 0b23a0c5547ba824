package proc

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// Process is a container's init or one of its execs.
type Process struct {
	c      *Container
	execID string
	stdio  Stdio
	spec   *specs.Process // exec only
	exit   *exitmon.Exit  // how and when it ended, in its exit domain

	mu       sync.Mutex
	state    state
	starting bool // a Start is running runc
	io       *pio
	pidfd    int
}

// ProcessState is a snapshot of a process for State.
type ProcessState struct {
	Pid      int
	Status   string
	Stdio    Stdio
	ExitCode int
	ExitedAt time.Time
}

// currentLocked is the process's state: a process whose exit was reported
// is stopped, whatever was stored.
func (p *Process) currentLocked() state {
	if p.state != stateDeleted {
		if _, ok := p.exit.Exited(); ok {
			return stateStopped
		}
	}
	return p.state
}

// check returns the state o leads to, or why the lifecycle refuses it.
func (p *Process) check(o op) (state, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.starting && o == opDelete {
		return p.state, fmt.Errorf("cannot delete a process while it starts: %w", errdefs.ErrFailedPrecondition)
	}
	return p.currentLocked().check(o)
}

// beginStart claims the process's one Start: the check and the claim
// happen under one lock, so two concurrent Starts never run two runcs. A
// process whose Start failed is not started again: its waiters were
// released already.
func (p *Process) beginStart() (state, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := p.currentLocked().check(opStart)
	if err != nil {
		return next, err
	}
	if p.starting {
		return next, fmt.Errorf("start already in progress: %w", errdefs.ErrFailedPrecondition)
	}
	if p.exit.NeverRan() {
		return next, fmt.Errorf("process failed to start; delete it: %w", errdefs.ErrFailedPrecondition)
	}
	p.starting = true
	return next, nil
}

// endStart ends a Start claimed by beginStart, leaving the process in s.
func (p *Process) endStart(s state) {
	p.mu.Lock()
	p.starting = false
	p.state = s
	p.mu.Unlock()
}

func (p *Process) set(s state) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

// State returns the process's state.
func (p *Process) State() ProcessState {
	p.mu.Lock()
	s := p.currentLocked()
	p.mu.Unlock()
	ps := ProcessState{Pid: p.exit.Pid(), Status: string(s), Stdio: p.stdio}
	if s == stateDeleted {
		ps.Status = string(stateStopped)
	}
	if st, ok := p.exit.Exited(); ok {
		ps.ExitCode, ps.ExitedAt = st.Code, st.ExitedAt
	}
	return ps
}

// Wait blocks until the process's exit is reported.
func (p *Process) Wait(ctx context.Context) (exitmon.Status, error) {
	return p.exit.Wait(ctx)
}

// signal sends sig to the process through its pidfd, so a recycled pid is
// never signalled.
func (p *Process) signal(sig int) error {
	p.mu.Lock()
	fd := p.pidfd
	p.mu.Unlock()
	var err error
	if fd >= 0 {
		err = unix.PidfdSendSignal(fd, unix.Signal(sig), nil, 0)
	} else if pid := p.exit.Pid(); pid > 0 {
		err = unix.Kill(pid, unix.Signal(sig))
	} else {
		// Never kill(0) or kill(-n): they signal the shim's own process
		// group. A process without a pid never ran (its Start failed or
		// was not called).
		return fmt.Errorf("process has not started: %w", errdefs.ErrFailedPrecondition)
	}
	if err == unix.ESRCH {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	return err
}

// launched records the pidfd and stdio of the process runc just made.
// Like every read of them, it holds p.mu: the init and exec paths guard
// them the same way.
func (p *Process) launched(pidfd int, io *pio) {
	p.mu.Lock()
	p.pidfd, p.io = pidfd, io
	p.mu.Unlock()
}

// stdioOf returns the process's stdio, nil before it launched.
func (p *Process) stdioOf() *pio {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.io
}

func (p *Process) closePidfd() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// release closes the process's pidfd and its stdio.
func (p *Process) release(ctx context.Context) {
	p.closePidfd()
	if io := p.stdioOf(); io != nil {
		io.Close(ctx)
	}
}

// ResizePty resizes the process's terminal.
func (p *Process) ResizePty(w, h uint32) error {
	if _, err := p.check(opResize); err != nil {
		return err
	}
	io := p.stdioOf()
	if io == nil {
		return fmt.Errorf("process has no stdio yet: %w", errdefs.ErrFailedPrecondition)
	}
	return io.Resize(w, h)
}

// CloseIO closes the process's stdin.
func (p *Process) CloseIO() {
	if io := p.stdioOf(); io != nil {
		io.CloseStdin()
	}
}

// readPid reads a pid file written by runc.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
