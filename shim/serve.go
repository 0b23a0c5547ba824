package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// socketEnv carries the group's socket address from `start` to the
// server, which claims it (see claimSocket) and removes it when it exits.
const socketEnv = "WATCH_SHIM_SOCKET"

// ttrpcAddressEnv is where containerd listens for events from shims.
const ttrpcAddressEnv = "TTRPC_ADDRESS"

// drainTimeout bounds how long an exiting server keeps delivering queued
// events; containerd waits for Shutdown's connection to close.
const drainTimeout = 4 * time.Second

// serve is the server: one per pod, serving the task API on the group's
// socket, which it claims itself, until containerd shuts it down or it
// has served no task for idleGrace.
func serve(ctx context.Context, f flags) error {
	tuneRuntime()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	l, own, err := serverListener(f.socket)
	if errors.Is(err, errServing) {
		return nil
	}
	if err != nil {
		return err
	}
	defer own.remove()
	openLog(ctx)
	_ = log.SetFormat(log.TextFormat)
	if f.debug {
		_ = log.SetLevel("debug")
	}
	// Our stderr is the log fifo: a containerd restart must not kill us
	// with SIGPIPE.
	signal.Ignore(unix.SIGPIPE)

	server, err := newServer()
	if err != nil {
		return err
	}
	pub := newPublisher(os.Getenv(ttrpcAddressEnv), f.namespace)
	mon := exitmon.New(pub)
	if slack, ok := coarsenTimers(); ok {
		mon.SetChildSlack(slack)
	}
	if nodelog.Enabled() {
		mon.SetNodeLog(&nodeLog{})
	}
	proc.ReapRuncThrough(mon)
	monCtx, stopMon := context.WithCancel(context.Background())
	defer stopMon()
	go mon.Run(monCtx)
	proc.WarmRuncProbe()
	go trimMemory(monCtx, 30*time.Second)

	done := newShutdown()
	svc := task.New(mon, f.namespace, done)
	idle := watchIdle(svc, idleGrace, func() {
		if svc.ShutdownIfIdle() {
			log.G(ctx).Info("no task served for the idle grace: shutting down")
		}
	})
	defer idle.Stop()
	svc.NotifyIdle(idle.Arm)
	if err := svc.RegisterTTRPC(server); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ctx, l) }()

	// No signal.Notify here or anywhere in the shim: os/signal keeps two OS
	// threads per process for life (see exitmon's waker). SIGTERM and
	// SIGINT end the shim at once, as SIGKILL does; every exit it reaped is
	// in the node log for the delete that containerd runs next. Goroutine
	// stacks, which shims dump on SIGUSR1, are `containerd-shim-watch-v2
	// stacks PID`.
	select {
	case <-done.C():
		log.G(ctx).Debug("shutdown requested")
	case err := <-serveErr:
		return fmt.Errorf("ttrpc server: %w", err)
	}
	// The last TaskExit/TaskDelete of the last task may still be queued;
	// containerd is up (it asked us to go), so deliver them first.
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := mon.Drain(dctx); err != nil {
		log.G(ctx).WithError(err).Warn("exiting with undelivered events")
	}
	own.remove()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = server.Shutdown(sctx)
	return pub.Close()
}

// logOpenTimeout bounds waiting for containerd to read the log fifo. A
// start that containerd gave up on leaves a fifo nobody will read; the
// server must still come up, so that it can see it serves nothing and exit.
const logOpenTimeout = 5 * time.Second

// openLog sends the log to the "log" fifo in the bundle, which containerd
// reads, if containerd opens it in time.
func openLog(ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, logOpenTimeout)
	defer cancel()
	if logFifo, err := fifo.OpenFifoDup2(octx, "log", unix.O_WRONLY, 0o700, int(os.Stderr.Fd())); err == nil {
		log.L.Logger.SetOutput(logFifo)
	}
}

// tuneRuntime sizes the Go runtime for a process that mostly waits: one P
// (its work is syscalls and short handlers; every extra P keeps its own
// cache of partly used heap spans) and a lower GC target than Go's default.
func tuneRuntime() {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(40)
}

// serverListener returns the socket to serve: path when given (-socket,
// owner-only like the group's socket), else the group's socket from
// `start`, which the server claims itself and reports on fd 3 (see
// claimSocket).
func serverListener(path string) (net.Listener, ownSocket, error) {
	if path != "" {
		l, err := newSocket(path)
		if err != nil {
			return nil, ownSocket{}, err
		}
		return l, newOwnSocket(path), nil
	}
	addr := os.Getenv(socketEnv)
	l, err := claimSocket(addr, os.NewFile(3, "report"))
	if err != nil {
		return nil, ownSocket{}, err
	}
	// The server keeps the socket file until it removes it itself.
	l.SetUnlinkOnClose(false)
	return l, newOwnSocket(socketPath(addr)), nil
}

// shutdown is closed once, when the task service has no task left.
type shutdown struct {
	once sync.Once
	c    chan struct{}
}

func newShutdown() *shutdown { return &shutdown{c: make(chan struct{})} }

// Shutdown asks the server to exit.
func (s *shutdown) Shutdown() { s.once.Do(func() { close(s.c) }) }

// C is closed when shutdown was asked for.
func (s *shutdown) C() <-chan struct{} { return s.c }
