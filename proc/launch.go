package proc

import (
	"context"
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

// launch runs a runc verb that creates a process (create, exec) and
// returns its pid and a pidfd for it: from runc's --pidfd-socket when runc
// supports it, else pidfd_open. The exit monitor's token is taken before
// runc runs, so an exit before we learn the pid is still ours.
func (c *Container) launch(ctx context.Context, pidFile string, run func(runc.PidfdSocket) error) (launched, error) {
	var (
		sock *pidfdSocket
		fdc  = make(chan int, 1)
	)
	if pidfdSocketSupported(c.runc) {
		if s, err := newPidfdSocket(); err == nil {
			sock = s
			go func() { fdc <- s.receive() }()
		}
	}
	tok := monitor.Begin()
	err := run(socketOrNil(sock))
	if err != nil {
		monitor.Cancel(tok)
		if sock != nil {
			sock.Close()
			if fd := <-fdc; fd >= 0 {
				unix.Close(fd)
			}
		}
		return launched{}, err
	}
	l := launched{tok: tok, pidfd: -1}
	if l.pid, err = readPid(pidFile); err != nil {
		monitor.Cancel(tok)
		return launched{}, err
	}
	if sock != nil {
		select {
		case l.pidfd = <-fdc:
		case <-time.After(5 * time.Second):
		}
		sock.Close()
	}
	if sock != nil && l.pidfd < 0 {
		log.G(ctx).WithField("pid", l.pid).Warn("runc sent no pidfd: opening one by pid")
	}
	if l.pidfd < 0 {
		if fd, err := unix.PidfdOpen(l.pid, 0); err == nil {
			l.pidfd = fd
		}
	}
	return l, nil
}

func socketOrNil(s *pidfdSocket) runc.PidfdSocket {
	if s == nil {
		return nil
	}
	return s
}
