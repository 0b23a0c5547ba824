package proc

import (
	"context"
	"time"

	runc "github.com/containerd/go-runc"
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
		sock *runc.Socket
		fdc  = make(chan int, 1)
	)
	if pidfdSocketSupported(c.runc) {
		if s, err := runc.NewTempPidfdSocket(); err == nil {
			sock = s
			go receivePidfd(s, fdc)
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
	if l.pidfd < 0 {
		if fd, err := unix.PidfdOpen(l.pid, 0); err == nil {
			l.pidfd = fd
		}
	}
	return l, nil
}

func socketOrNil(s *runc.Socket) runc.PidfdSocket {
	if s == nil {
		return nil
	}
	return s
}

func receivePidfd(s *runc.Socket, out chan<- int) {
	f, err := s.ReceivePidfd()
	if err != nil {
		out <- -1
		return
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		fd = -1
	}
	out <- fd
}
