package exitmon

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sweepEvery is how often Run reaps without being woken (Monitor.sweep).
// A pidfd wakes it for every process it tracks; the sweep is for the rest:
// orphans that a host-PID container leaves to the shim (a child subreaper),
// and a process whose pidfd could not be had.
const sweepEvery = time.Second

// waker tells Run that a tracked process has exited, without signals.
//
// SIGCHLD through os/signal costs every shim two OS threads for life: Go
// parks one in the signal queue and locks another to keep signal masks. A
// shim at rest then had five or six threads, each with its own Go stacks,
// where four do. Instead, every tracked process has a pidfd in an
// epoll set of our own; the epoll fd sits in Go's netpoller like a socket,
// so an exit wakes the scheduler's own epoll wait directly: no signal
// handler, no thread hand-off.
//
// The pidfds only wake Run: reap still collects every child with
// wait4(-1), so an exit is never lost to a missed wake-up, only delayed
// until the next sweep.
type waker struct {
	file   *os.File // the epoll fd, registered with the netpoller
	rc     syscall.RawConn
	epfd   int // its number: file.Fd would make it blocking
	fds    map[int]int
	closed bool // guarded by Monitor.mu, like fds
}

// newWaker returns nil when the kernel cannot do this (pidfd_open needs
// Linux 5.3); Run then falls back to SIGCHLD.
func newWaker() *waker {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return nil
	}
	unix.Close(fd)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil
	}
	file := os.NewFile(uintptr(epfd), "exitmon-epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil
	}
	return &waker{file: file, rc: rc, epfd: epfd, fds: make(map[int]int)}
}

// watchLocked adds pid to the epoll set: through a duplicate of pidfd when
// the caller has one, else a pidfd of its own. Called with Monitor.mu held,
// before pid can be reaped and so before its pid can be reused.
func (w *waker) watchLocked(pid, pidfd int) {
	if w == nil || w.closed {
		return
	}
	if _, ok := w.fds[pid]; ok {
		return
	}
	var fd int
	var err error
	if pidfd >= 0 {
		fd, err = unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	} else {
		fd, err = unix.PidfdOpen(pid, 0)
	}
	if err != nil {
		return // the sweep will find it
	}
	// Edge-triggered: a pidfd stays readable once its process has exited,
	// and it is closed only when reap has collected that exit.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return
	}
	w.fds[pid] = fd
}

// doneLocked forgets pid once its exit has been reaped.
func (w *waker) doneLocked(pid int) {
	if w == nil {
		return
	}
	if fd, ok := w.fds[pid]; ok {
		unix.Close(fd) // the last reference: epoll drops it too
		delete(w.fds, pid)
	}
}

// wait returns when a watched process may have exited, or after timeout
// (false), or with an error when the waker was closed.
func (w *waker) wait(timeout time.Duration) (bool, error) {
	if err := w.file.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	var events [32]unix.EpollEvent
	woken := false
	err := w.rc.Read(func(fd uintptr) bool {
		// Drain the set: the netpoller sees our epoll fd edge-triggered,
		// so it must be empty before we wait on it again.
		for {
			n, err := unix.EpollWait(int(fd), events[:], 0)
			if err == unix.EINTR {
				continue
			}
			if n > 0 {
				woken = true
			}
			if n < len(events) {
				return woken
			}
		}
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	return woken, err
}

// closeWaker ends the wake-ups: a waiting Run returns.
func (m *Monitor) closeWaker() {
	m.mu.Lock()
	m.wake.closed = true
	m.mu.Unlock()
	m.wake.file.Close()
}

// During an exit burst Run also reaps every burstPoll, for as long as the
// polls find exits: burstMisses polls in a row that find none end it. A
// busy scheduler looks at the netpoller only when it runs out of
// goroutines or when sysmon gets to it (every 10 ms), so with the shim's
// one P busy delivering exits, a pidfd wake-up could wait that long; a
// deadline is a timer, which the scheduler checks every time a goroutine
// parks. Ending on misses, not after a fixed time, keeps the common pair
// of exits (an exec's runc and the exec itself, one soon after the other)
// from paying for a burst that is not one: a fixed hold of 50 polls made
// every exec cost more than the exec itself.
const (
	burstPoll   = time.Millisecond
	burstMisses = 2
	// burstGap: two exits this close count as a burst, even when one
	// reap pass found one each.
	burstGap = 50 * time.Millisecond
)

// burst decides, after each reap pass, whether Run polls (see burstPoll).
type burst struct {
	lastExit time.Time
	misses   int // polls in a row that found nothing; -1: not polling
}

// next records a reap pass that found n exits at now and says whether the
// next wait is a poll.
func (b *burst) next(n int, now time.Time) bool {
	if n == 0 {
		if b.misses < 0 {
			return false
		}
		b.misses++
		if b.misses >= burstMisses {
			b.misses = -1
			return false
		}
		return true
	}
	// Several exits in one pass, or one soon after another (not the lone
	// exit of a runc call, so a pod start does not poll per runc).
	if n > 1 || now.Sub(b.lastExit) < burstGap {
		b.misses = 0
	}
	b.lastExit = now
	return b.misses >= 0
}

// runWoken is Run with pidfd wake-ups and a sweep every m.sweep.
func (m *Monitor) runWoken(ctx context.Context) {
	stop := context.AfterFunc(ctx, m.closeWaker)
	defer stop()
	b := burst{misses: -1}
	for {
		timeout := m.sweep
		if b.next(m.reap(), time.Now()) {
			timeout = burstPoll
		}
		if _, err := m.wake.wait(timeout); err != nil {
			if ctx.Err() == nil {
				logger(ctx).WithError(err).Error("exit wake-ups failed; reaping on SIGCHLD")
				m.runSignals(ctx)
			}
			return
		}
	}
}
