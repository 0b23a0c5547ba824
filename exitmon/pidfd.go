package exitmon

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pidfdPoller finds the tracked processes that exited: one epoll set holds
// a pidfd per watched process, and on SIGCHLD a non-blocking epoll_wait
// returns exactly the ones to reap with waitid(P_PIDFD). wait4(-1), which
// walks every child of the shim on each call, is left to orphans (see Run).
type pidfdPoller struct {
	epfd int
}

func newPidfdPoller() (*pidfdPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &pidfdPoller{epfd: epfd}, nil
}

// add registers a duplicate of pidfd for pid; events carry pid and gen, so
// an event of a pidfd already removed is recognised as stale.
func (p *pidfdPoller) add(pid, pidfd int, gen uint32) (int, error) {
	fd, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pid), Pad: int32(gen)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// remove unregisters and closes a pidfd returned by add.
func (p *pidfdPoller) remove(fd int) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
}

// ready returns the registered pidfds whose process has exited, without
// blocking.
func (p *pidfdPoller) ready(evs []unix.EpollEvent) int {
	for {
		n, err := epollWaitNow(p.epfd, evs)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
}

// epollWaitNow is epoll_wait with a zero timeout, as a raw system call:
// it never blocks, so the goroutine keeps its P.
func epollWaitNow(epfd int, evs []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// siginfoChld is the start of siginfo_t for SIGCHLD as waitid fills it.
type siginfoChld struct {
	signo, errno, code, _ int32
	pid, uid, status      int32
	_                     [128 - 28]byte
}

// waitPidfd reaps the process behind pidfd if it has exited. It returns
// pid 0 when the process still runs, and an error (ECHILD) when it is not
// (or no longer) a child of the shim. A raw system call: it never blocks.
func waitPidfd(pidfd int) (int, unix.WaitStatus, error) {
	var si siginfoChld
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_WAITID, unix.P_PIDFD, uintptr(pidfd),
			uintptr(unsafe.Pointer(&si)), unix.WEXITED|unix.WNOHANG, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, 0, e
		}
		break
	}
	if si.pid == 0 {
		return 0, 0, nil
	}
	return int(si.pid), waitStatusOf(si.code, si.status), nil
}

// si_code values of a SIGCHLD siginfo (linux/siginfo.h).
const (
	cldExited = 1
	cldDumped = 3
)

// waitStatusOf builds the wait4 status word from waitid's code and status.
func waitStatusOf(code, status int32) unix.WaitStatus {
	switch code {
	case cldExited:
		return unix.WaitStatus((status & 0xff) << 8)
	case cldDumped:
		return unix.WaitStatus(status&0x7f | 0x80)
	default: // CLD_KILLED
		return unix.WaitStatus(status & 0x7f)
	}
}
