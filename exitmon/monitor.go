package exitmon

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"time"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Token marks the moment a caller began creating a process whose pid it does
// not know yet. An exit reaped after the token was taken can still be
// matched to that pid by Track: exits that happen before the pid is known
// are never dropped.
type Token uint64

// Monitor reaps every child of the shim (it must be a child subreaper, so
// orphans of containers land here too) and hands each exit to the watcher
// of that pid. It is safe for concurrent use.
type Monitor struct {
	mu        sync.Mutex
	seq       uint64
	watches   map[int]*watcher
	unclaimed map[int][]reaped
	open      map[Token]int
	counters  Counters
	outbox    *outbox
	poll      *pidfdPoller // nil when the kernel has no epoll for pidfds
	gen       uint32       // last pidfd registration
	unpolled  int          // watches without a polled pidfd: only wait4 finds their exit
}

// watcher is a tracked process whose exit is still to come.
type watcher struct {
	fn    func(Status)
	pidfd int // our own pidfd in the poller, or -1
	gen   uint32
}

type reaped struct {
	seq uint64
	st  Status
}

// New returns a monitor whose tasks publish their events through pub.
// Call Run to start reaping.
func New(pub Publisher) *Monitor {
	m := &Monitor{
		watches:   make(map[int]*watcher),
		unclaimed: make(map[int][]reaped),
		open:      make(map[Token]int),
	}
	if p, err := newPidfdPoller(); err == nil {
		m.poll = p
	}
	m.outbox = newOutbox(pub, outboxWorkers)
	return m
}

// sweepInterval bounds how often a SIGCHLD makes the monitor walk every
// child with wait4(-1) while every watched process is polled through its
// pidfd: such a walk then only finds orphans, which nobody waits for.
const sweepInterval = 20 * time.Millisecond

// Run reaps children on every SIGCHLD until ctx is done: watched processes
// whose pidfds report the exit at once, everything else (orphans, processes
// without a pidfd, exits before Track) with wait4(-1), at most once per
// sweepInterval while every watched process has a polled pidfd.
func (m *Monitor) Run(ctx context.Context) {
	sig := make(chan os.Signal, 128)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	m.Reap()
	last := time.Now()
	sweep := time.NewTimer(time.Hour)
	sweep.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			sweep.Stop()
			return
		case <-sig:
			m.reapReady()
			if armed {
				continue
			}
			if wait := sweepInterval - time.Since(last); wait > 0 && !m.needsSweep() {
				sweep.Reset(wait)
				armed = true
				continue
			}
		case <-sweep.C:
			armed = false
		}
		m.Reap()
		last = time.Now()
	}
}

// needsSweep reports whether an exit may be waiting that only wait4(-1)
// can report to a waiter: a watched process without a polled pidfd.
func (m *Monitor) needsSweep() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unpolled > 0
}

// reapPolled reaps the watched processes whose pidfds became readable.
func (m *Monitor) reapPolled(evs []unix.EpollEvent) {
	var deliver []func()
	m.mu.Lock()
	for _, ev := range evs {
		pid := int(ev.Fd)
		w := m.watches[pid]
		if w == nil || w.pidfd < 0 || w.gen != uint32(ev.Pad) {
			continue // reaped by wait4(-1) meanwhile
		}
		rpid, ws, err := waitPidfd(w.pidfd)
		if err != nil {
			// Not our child (yet): leave it to wait4(-1).
			m.unpollLocked(w)
			continue
		}
		if rpid == 0 {
			continue
		}
		deliver = append(deliver, m.dispatchLocked(pid, ws))
	}
	m.mu.Unlock()
	deliverAll(deliver)
}

// unpollLocked stops polling w's pidfd; its exit is then left to wait4(-1).
func (m *Monitor) unpollLocked(w *watcher) {
	if w.pidfd >= 0 {
		m.poll.remove(w.pidfd)
		w.pidfd = -1
		m.unpolled++
	}
}

// Reap collects every exited child without blocking (first the watched
// processes whose pidfds are ready, then every other child) and hands each
// exit to its watcher. Watchers run concurrently; the order that matters (a task's
// exec exits before its init's) is kept by Task, not by delivery order.
func (m *Monitor) Reap() {
	m.reapReady()
	m.sweepWait4()
}

// reapReady reaps the watched processes whose pidfds report an exit.
func (m *Monitor) reapReady() {
	if m.poll == nil {
		return
	}
	var evs [64]unix.EpollEvent
	for n := m.poll.ready(evs[:]); n > 0; n = m.poll.ready(evs[:]) {
		m.reapPolled(evs[:n])
	}
}

// sweepWait4 reaps every exited child with wait4(-1): orphans, processes
// without a polled pidfd, and exits before Track.
func (m *Monitor) sweepWait4() {
	var deliver []func()
	m.mu.Lock()
	for {
		var ws unix.WaitStatus
		pid, err := wait4NoHang(-1, &ws)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			break
		}
		deliver = append(deliver, m.dispatchLocked(pid, ws))
	}
	m.mu.Unlock()
	deliverAll(deliver)
}

// deliverAll runs each delivery on its own goroutine, off the reap loop: a
// watcher may run runc, whose own exit the loop has to reap.
func deliverAll(deliver []func()) {
	for _, d := range deliver {
		if d != nil {
			go d()
		}
	}
}

func (m *Monitor) dispatchLocked(pid int, ws unix.WaitStatus) func() {
	m.seq++
	m.counters.ExitsSeen++
	st := Status{Pid: pid, Code: codeOf(ws), ExitedAt: time.Now()}
	if w, ok := m.watches[pid]; ok {
		delete(m.watches, pid)
		if w.pidfd >= 0 {
			m.poll.remove(w.pidfd)
		} else {
			m.unpolled--
		}
		return func() { w.fn(st) }
	}
	if len(m.open) > 0 {
		m.unclaimed[pid] = append(m.unclaimed[pid], reaped{seq: m.seq, st: st})
		return nil
	}
	m.counters.Orphans++
	return nil
}

// Begin returns a token to pass to Track once the pid of the process being
// created is known. Every token must end in Track or Cancel.
func (m *Monitor) Begin() Token {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := Token(m.seq)
	m.open[t]++
	return t
}

// Cancel releases a token whose process was never created.
func (m *Monitor) Cancel(t Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(t)
}

func (m *Monitor) releaseLocked(t Token) {
	if m.open[t]--; m.open[t] <= 0 {
		delete(m.open, t)
	}
	m.pruneLocked()
}

// pruneLocked drops unclaimed exits that no open token can claim any more.
func (m *Monitor) pruneLocked() {
	oldest, any := m.oldestTokenLocked()
	for pid, exits := range m.unclaimed {
		keep := exits[:0]
		for _, e := range exits {
			if any && e.seq > uint64(oldest) {
				keep = append(keep, e)
			} else {
				m.counters.Orphans++
			}
		}
		if len(keep) == 0 {
			delete(m.unclaimed, pid)
		} else {
			m.unclaimed[pid] = keep
		}
	}
}

func (m *Monitor) oldestTokenLocked() (Token, bool) {
	var oldest Token
	found := false
	for t := range m.open {
		if !found || t < oldest {
			oldest, found = t, true
		}
	}
	return oldest, found
}

// Track calls fn exactly once with the exit of pid, the process created
// after t was taken. pidfd (or -1) identifies the process: when it is still
// alive, an earlier exit of a recycled pid is never mistaken for it.
func (m *Monitor) Track(t Token, pid, pidfd int, fn func(Status)) {
	var early func()
	m.mu.Lock()
	st, ok := m.claimLocked(t, pid, pidfd)
	if !ok {
		w := &watcher{fn: fn, pidfd: -1}
		if m.poll != nil && pidfd >= 0 {
			m.gen++
			if fd, err := m.poll.add(pid, pidfd, m.gen); err == nil {
				w.pidfd, w.gen = fd, m.gen
			}
		}
		if w.pidfd < 0 {
			m.unpolled++
		}
		m.watches[pid] = w
		if w.pidfd >= 0 {
			// It may have exited already, its SIGCHLD handled before it
			// was polled: reap it now rather than at the next sweep.
			if rpid, ws, err := waitPidfd(w.pidfd); err != nil {
				m.unpollLocked(w)
			} else if rpid != 0 {
				early = m.dispatchLocked(pid, ws)
			}
		}
	}
	m.releaseLocked(t)
	m.mu.Unlock()
	if ok {
		fn(st)
	}
	if early != nil {
		early()
	}
}

// claimLocked finds an exit of pid reaped after t. The latest one wins: a
// pid cannot be reused while our process holds it, so the newest exit is
// ours whenever our process is gone.
func (m *Monitor) claimLocked(t Token, pid, pidfd int) (Status, bool) {
	exits := m.unclaimed[pid]
	if len(exits) == 0 || alive(pidfd) {
		return Status{}, false
	}
	last := exits[len(exits)-1]
	if last.seq <= uint64(t) {
		return Status{}, false
	}
	if len(exits) == 1 {
		delete(m.unclaimed, pid)
	} else {
		m.unclaimed[pid] = exits[:len(exits)-1]
	}
	return last.st, true
}

// wait4NoHang is wait4(pid, WNOHANG) as a raw system call: it never blocks,
// so the goroutine keeps its P. A reap costs tens of microseconds in the
// kernel (release_task), long enough for the runtime to hand a P that
// entered a syscall to another thread; with one P that meant a thread
// wake-up and park per reaped child.
func wait4NoHang(pid int, ws *unix.WaitStatus) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_WAIT4, uintptr(pid), uintptr(unsafe.Pointer(ws)), unix.WNOHANG, 0, 0, 0)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// alive reports whether the process behind pidfd has not been reaped yet.
func alive(pidfd int) bool {
	if pidfd < 0 {
		return false
	}
	return unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil
}

// Counters returns a snapshot of the monitor's counters.
func (m *Monitor) Counters() Counters {
	m.mu.Lock()
	c := m.counters
	m.mu.Unlock()
	m.outbox.fill(&c)
	return c
}

// Counters describe what the exit monitor has done since it started.
type Counters struct {
	ExitsSeen     uint64        `json:"exits_seen"`       // children reaped
	Orphans       uint64        `json:"orphans"`          // reaped children nobody tracked
	EventsQueued  uint64        `json:"events_queued"`    // events accepted by the outbox
	EventsSent    uint64        `json:"events_sent"`      // events containerd acknowledged
	EventsRetried uint64        `json:"events_retried"`   // failed sends that were retried
	OldestUnsent  time.Duration `json:"oldest_unsent_ns"` // age of the oldest event not yet sent
}

func logger(ctx context.Context) *log.Entry { return log.G(ctx).WithField("component", "exitmon") }

// Drain waits until every queued event has been delivered or ctx ends. The
// shim calls it before exiting so the last TaskExit/TaskDelete of its last
// task is not lost with the process.
func (m *Monitor) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for m.outbox.pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
