package proc

import (
	"context"
	"fmt"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// launched is a process runc just created.
type launched struct {
	tok   exitmon.Token
	pid   int
	pidfd int
}

// pidfdWait bounds how long launch waits, once runc returned, for the
// pidfd runc sent. A variable for tests.
var pidfdWait = 5 * time.Second

// noPidfdSocket logs launches that go without a pidfd socket.
var noPidfdSocket = &rateLog{msg: "no pidfd socket: opening pidfds by pid", period: time.Minute}

// launch runs a runc verb that creates a process (create, exec) and
// returns its pid and a pidfd for it: from runc's --pidfd-socket when runc
// supports it, else pidfd_open. The exit monitor's token is taken before
// runc runs, so an exit before we learn the pid is still ours.
//
// When runc succeeded but its pid file cannot be read, the process cannot
// be tracked: launch kills it through the pidfd runc sent, if any, and
// calls undo (if not nil) to remove what runc left, e.g. the container
// that `runc create` made. Whatever happens, the socket is closed and no
// pidfd received on it is left open.
func (c *Container) launch(ctx context.Context, pidFile string, run func(runc.PidfdSocket) error, undo func(context.Context)) (launched, error) {
	r := c.receivePidfd()
	tok := c.mon.Begin()
	if err := run(r.socket()); err != nil {
		c.mon.Cancel(tok)
		closeFd(r.stop())
		return launched{}, err
	}
	pid, err := readPid(pidFile)
	if err != nil {
		c.mon.Cancel(tok)
		abort(ctx, r.wait(), undo)
		return launched{}, fmt.Errorf("read pid file: %w", err)
	}
	l := launched{tok: tok, pid: pid, pidfd: r.wait()}
	if r.sock != nil && l.pidfd < 0 {
		log.G(ctx).WithField("pid", l.pid).Warn("runc sent no pidfd: opening one by pid")
	}
	if l.pidfd < 0 {
		if fd, err := unix.PidfdOpen(l.pid, 0); err == nil {
			l.pidfd = fd
		}
	}
	return l, nil
}

// abort undoes a launch whose process the shim cannot track.
func abort(ctx context.Context, pidfd int, undo func(context.Context)) {
	if pidfd >= 0 {
		_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		unix.Close(pidfd)
	} else if undo == nil {
		log.G(ctx).Warn("a process runc started has no pid file and no pidfd: it cannot be killed")
	}
	if undo != nil {
		undo(context.WithoutCancel(ctx))
	}
}

// pidfdReceiver is a pidfd socket with its receive running, or nothing
// when runc takes no --pidfd-socket or the socket could not be made.
type pidfdReceiver struct {
	sock *pidfdSocket
	fdc  chan int
}

func (c *Container) receivePidfd() pidfdReceiver {
	if !pidfdSocketSupported(c.runc) {
		return pidfdReceiver{}
	}
	s, err := newPidfdSocket()
	if err != nil {
		noPidfdSocket.warn(err)
		return pidfdReceiver{}
	}
	r := pidfdReceiver{sock: s, fdc: make(chan int, 1)}
	go func() { r.fdc <- s.receive() }()
	return r
}

// socket is what runc is given: nil without a socket.
func (r pidfdReceiver) socket() runc.PidfdSocket {
	if r.sock == nil {
		return nil
	}
	return r.sock
}

// wait returns runc's pidfd, or -1 if none came within pidfdWait, and
// closes the socket.
func (r pidfdReceiver) wait() int {
	if r.sock == nil {
		return -1
	}
	t := time.NewTimer(pidfdWait)
	defer t.Stop()
	select {
	case fd := <-r.fdc:
		r.sock.Close()
		return fd
	case <-t.C:
		return r.stop()
	}
}

// stop closes the socket and returns what receive got, which after Close
// it does at once: a pidfd that came in meanwhile is returned, not left
// behind in the channel.
func (r pidfdReceiver) stop() int {
	if r.sock == nil {
		return -1
	}
	r.sock.Close()
	return <-r.fdc
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
