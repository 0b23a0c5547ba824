package shim

import (
	"sync"
	"time"
)

// idleGrace is how long a server that serves no task, and has no Create
// in flight, waits before it exits. It covers the gap between `start`
// printing the address and containerd's first Create, and the gap after a
// Create that failed or was abandoned, when containerd's Shutdown may have
// come (and been refused) while the Create was still running. A pod's
// workload containers join only while its sandbox task is served, so they
// never depend on this window.
const idleGrace = 10 * time.Second

// idleSource is what the watch needs of the task service.
type idleSource interface {
	// IdleSince reports whether no task is served and no Create is in
	// flight, and since when.
	IdleSince() (time.Time, bool)
}

// idleWatch calls exit once src has been idle for grace. It wakes only
// when armed (at start and whenever src becomes idle), never while tasks
// are served.
type idleWatch struct {
	src   idleSource
	grace time.Duration
	exit  func()

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// watchIdle starts the watch, armed: a server that never gets a Create
// exits after grace.
func watchIdle(src idleSource, grace time.Duration, exit func()) *idleWatch {
	w := &idleWatch{src: src, grace: grace, exit: exit}
	w.mu.Lock()
	w.timer = time.AfterFunc(grace, w.check)
	w.mu.Unlock()
	return w
}

// Arm restarts the countdown; the service calls it each time it becomes
// idle. Safe for concurrent use.
func (w *idleWatch) Arm() { w.after(w.grace) }

// Stop disarms the watch for good.
func (w *idleWatch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}

func (w *idleWatch) after(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.timer.Reset(d)
	}
}

// check exits if src has been idle for the whole grace; if it became idle
// later it waits for the rest; if it is busy it waits to be armed again.
func (w *idleWatch) check() {
	since, idle := w.src.IdleSince()
	if !idle {
		return
	}
	if left := w.grace - time.Since(since); left > 0 {
		w.after(left)
		return
	}
	w.exit()
}
