package exitmon

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Token marks the moment a caller began creating a process whose pid it does
// not know yet. An exit reaped after the token was taken can still be
// matched to that pid by track: exits that happen before the pid is known
// are never dropped.
type Token uint64

// Monitor reaps every child of the shim (it must be a child subreaper, so
// orphans of containers land here too) and hands each exit to the watcher
// of that pid. It is safe for concurrent use.
type Monitor struct {
	mu        sync.Mutex
	seq       uint64
	watches   map[int]func(Status)
	unclaimed map[int][]reaped
	open      map[Token]int
	counters  Counters
	nodeLog   NodeLog
	// appends to the node log that succeeded and failed
	logAppended, logFailed atomic.Uint64
	outbox                 *outbox
	wake                   *waker        // nil: Run reaps on SIGCHLD
	sweep                  time.Duration // reap this often without a wake-up
	// childSlack is the timer slack StartCmd's children begin with, in
	// ns; 0: the forking thread's (SetChildSlack).
	childSlack atomic.Int64
}

type reaped struct {
	seq uint64
	st  Status
}

// New returns a monitor whose tasks publish their events through pub.
// Call Run to start reaping.
func New(pub Publisher) *Monitor {
	m := &Monitor{
		watches:   make(map[int]func(Status)),
		unclaimed: make(map[int][]reaped),
		open:      make(map[Token]int),
		wake:      newWaker(),
		sweep:     sweepEvery,
	}
	m.outbox = newOutbox(pub, outboxWorkers)
	return m
}

// Run reaps children until ctx is done: woken by the pidfds of the
// processes it tracks and every sweepEvery (see waker), or on SIGCHLD
// where the kernel has no pidfds.
func (m *Monitor) Run(ctx context.Context) {
	if m.wake != nil {
		m.runWoken(ctx)
		return
	}
	m.runSignals(ctx)
}

// runSignals reaps children on every SIGCHLD until ctx is done.
func (m *Monitor) runSignals(ctx context.Context) {
	sig := make(chan os.Signal, 128)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	m.reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			m.reap()
		}
	}
}

// reap collects every exited child without blocking and hands each exit to
// its watcher. It returns how many it collected. Watchers run concurrently;
// the order that matters (a task's exec exits before its init's) is kept by
// Domain, not by delivery order.
//
// Each exit is handed over as soon as it is reaped, and the loop yields so
// that its watcher runs before the next child is reaped: reaping is a raw
// system call that keeps the one P, so without the yield a burst of
// exits would all wait for the whole loop before the first event went out
// (docs/performance.md, "Costs behind code comments").
func (m *Monitor) reap() int {
	n := 0
	for {
		m.mu.Lock()
		pid, ws, errno := wait4NoHang()
		var deliver func()
		if errno == 0 && pid > 0 {
			deliver = m.dispatchLocked(pid, ws)
		}
		m.mu.Unlock()
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || pid <= 0 {
			return n
		}
		n++
		// Off the reap loop: a watcher may run runc, whose own exit this
		// loop has to reap.
		if deliver != nil {
			go deliver()
			runtime.Gosched()
		}
	}
}

// wait4NoHang is wait4(-1, &ws, WNOHANG, nil) as a raw system call: it never
// blocks, so it need not tell the Go scheduler it is in a system call. With
// one P, the scheduler would otherwise hand the P to another thread whenever
// reaping (freeing the child, walking the list of children) outlasts a
// sysmon tick, which in an exit burst is most calls: a thread wake-up and
// a hand-back per exit.
func wait4NoHang() (int, unix.WaitStatus, unix.Errno) {
	var ws unix.WaitStatus
	pid, _, errno := unix.RawSyscall6(unix.SYS_WAIT4, uintptr(anyChild), uintptr(unsafe.Pointer(&ws)), unix.WNOHANG, 0, 0, 0)
	return int(pid), ws, errno
}

// anyChild is wait4's pid -1, in a variable so it converts to uintptr.
var anyChild = -1

func (m *Monitor) dispatchLocked(pid int, ws unix.WaitStatus) func() {
	m.seq++
	m.counters.ExitsSeen++
	m.wake.doneLocked(pid)
	st := Status{Pid: pid, Code: codeOf(ws), ExitedAt: time.Now()}
	if fn, ok := m.watches[pid]; ok {
		delete(m.watches, pid)
		return func() { fn(st) }
	}
	if len(m.open) > 0 {
		m.unclaimed[pid] = append(m.unclaimed[pid], reaped{seq: m.seq, st: st})
		return nil
	}
	m.counters.Orphans++
	return nil
}

// Begin returns a token to pass to track once the pid of the process being
// created is known. Every token must end in track or Cancel.
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

// track calls fn exactly once with the exit of pid, the process created
// after t was taken. pidfd (or -1) identifies the process: when it is still
// alive, an earlier exit of a recycled pid is never mistaken for it.
func (m *Monitor) track(t Token, pid, pidfd int, fn func(Status)) {
	m.mu.Lock()
	st, ok := m.claimLocked(t, pid, pidfd)
	if !ok {
		m.watches[pid] = fn
		m.wake.watchLocked(pid, pidfd)
	}
	m.releaseLocked(t)
	m.mu.Unlock()
	if ok {
		fn(st)
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
	c.LogAppended, c.LogFailed = m.logAppended.Load(), m.logFailed.Load()
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
	LogAppended   uint64        `json:"log_appended"`     // records appended to the node log
	LogFailed     uint64        `json:"log_failed"`       // records the node log refused (unwritable, full)
	// ExitPublished is the time from each exit to containerd's
	// acknowledgement of its TaskExit.
	ExitPublished Histogram `json:"exit_published"`
}

func logger(ctx context.Context) *log.Entry { return log.G(ctx).WithField("component", "exitmon") }

// debugEnabled reports whether debug entries are written (containerd
// starts shims with -debug only at its own debug level): per-exit debug
// fields are built only then, not on every exit of a node at info level.
func debugEnabled() bool { return log.L.Logger.IsLevelEnabled(log.DebugLevel) }

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
