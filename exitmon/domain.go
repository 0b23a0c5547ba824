package exitmon

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// Events the monitor composes itself. The shim turns them into containerd's
// event types; keeping them plain keeps exitmon free of API types.
type (
	// ExitEvent is published as TaskExit.
	ExitEvent struct {
		ContainerID, ExecID string
		Status
	}
	// OOMEvent is published as TaskOOM, before the init's TaskExit.
	OOMEvent struct{ ContainerID string }
)

// Domain is one container's exit domain (one task of containerd's API): its
// init, its execs and its ordered event queue; its transitions, exits
// included, go to the node log (see recordLocked and recordExitLocked).
// It enforces the event order Create < Start < Exit < Delete, every exec's
// exit before the init's, and nothing after Delete. Exec exits queued next
// to each other are the only events whose relative order is not kept. It is
// safe for concurrent use.
type Domain struct {
	id  string
	who Identity
	mon *Monitor
	q   *queue

	mu         sync.Mutex
	init       *Exit
	execs      map[string]*Exit
	heldInit   *Status // init exit waiting for running execs to finish
	oomCheck   func() bool
	onInitExit func()
	deleted    bool
}

// NewDomain opens the task's event queue, which spills to bundle.
func (m *Monitor) NewDomain(bundle string, id Identity) (*Domain, error) {
	t := &Domain{id: id.ID, who: id, mon: m, q: m.outbox.newQueue(filepath.Join(bundle, spillName)), execs: map[string]*Exit{}}
	t.init = &Exit{domain: t, done: make(chan struct{})}
	return t, nil
}

// SetOOMCheck installs the function asked, synchronously at init exit,
// whether the container was OOM-killed.
func (t *Domain) SetOOMCheck(fn func() bool) { t.mu.Lock(); t.oomCheck = fn; t.mu.Unlock() }

// SetInitExitHook installs a function run when init exits, before the exit
// is reported (used to kill what is left in a shared pid namespace).
func (t *Domain) SetInitExitHook(fn func()) { t.mu.Lock(); t.onInitExit = fn; t.mu.Unlock() }

// Publish queues an event for the task, after every event queued before.
// Events published after Delete are dropped.
func (t *Domain) Publish(topic string, ev any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.publishLocked(topic, ev)
}

func (t *Domain) publishLocked(topic string, ev any) { t.publishForLocked(nil, topic, ev) }

// publishForLocked records the event of p (nil: of the task) in the node
// log, then queues it.
func (t *Domain) publishForLocked(p *Exit, topic string, ev any) {
	if !t.deleted {
		t.recordLocked(topic, ev, p)
		t.q.push(topic, ev)
	}
}

// queueLocked queues an event already recorded in the node log.
func (t *Domain) queueLocked(topic string, ev any) {
	if !t.deleted {
		t.q.push(topic, ev)
	}
}

// Init returns the task's init process.
func (t *Domain) Init() *Exit { return t.init }

// AddExec registers a new exec process.
func (t *Domain) AddExec(execID string) (*Exit, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.execs[execID]; ok {
		return nil, errdefs.ErrAlreadyExists
	}
	p := &Exit{domain: t, execID: execID, done: make(chan struct{})}
	t.execs[execID] = p
	return p, nil
}

// RemoveExec forgets an exec (after its Delete), in the node log too.
func (t *Domain) RemoveExec(execID string) {
	t.mu.Lock()
	delete(t.execs, execID)
	t.mu.Unlock()
	t.recordExecDeleted(execID)
}

// Delete queues the final event and closes the queue: nothing is published
// for the task after it. It returns a channel closed once every queued event
// has been delivered.
func (t *Domain) Delete(topic string, ev any) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.publishLocked(topic, ev)
	t.deleted = true
	t.q.close()
	return t.q.drained
}

// Abandon closes a task that was never created: no event, no record.
func (t *Domain) Abandon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleted = true
	t.q.close()
}

// onExit handles a reaped exit of p: the node log first (the exit's one
// write, which is also what `shim delete` reads after a crash), then the
// ordering of its events.
func (t *Domain) onExit(p *Exit, st Status) {
	if p.execID == "" {
		t.mu.Lock()
		check, hook := t.oomCheck, t.onInitExit
		t.mu.Unlock()
		if check != nil && check() {
			st.OOM = true
		}
		if hook != nil {
			hook()
		}
	}
	if debugEnabled() {
		logger(context.Background()).WithFields(map[string]any{
			"id": t.id, "exec_id": p.execID, "pid": st.Pid, "status": st.Code, "oom": st.OOM,
			"sandbox": t.who.Sandbox, "pod": t.who.PodNamespace + "/" + t.who.PodName,
		}).Debug("exit")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p.reaped = &st
	t.recordExitLocked(p, st)
	if p.execID == "" && t.runningExecsLocked() > 0 {
		t.heldInit = &st
		return
	}
	t.finishLocked(p)
}

// finishLocked reports p's exit unless its Start is still being answered.
func (t *Domain) finishLocked(p *Exit) {
	if p.starting || p.exit != nil || p.neverRan != nil {
		return
	}
	st := *p.reaped
	p.exit = &st
	if p.execID == "" && st.OOM {
		t.queueLocked(TopicOOM, OOMEvent{ContainerID: t.id})
	}
	ev := ExitEvent{ContainerID: t.id, ExecID: p.execID, Status: st}
	if p.execID == "" {
		t.queueLocked(TopicExit, ev)
	} else if !t.deleted {
		// An exec's exit follows its start (already queued) and precedes
		// the init's exit (queued later); among other execs' exits it has
		// no order, so a burst of them is sent concurrently.
		t.q.pushFree(TopicExit, ev)
	}
	close(p.done)
	if p.execID != "" && t.heldInit != nil && t.runningExecsLocked() == 0 {
		t.heldInit = nil
		t.finishLocked(t.init)
	}
}

// runningExecsLocked counts execs that were started and whose exit has not
// been reported yet.
func (t *Domain) runningExecsLocked() int {
	n := 0
	for _, p := range t.execs {
		if p.tracked && p.exit == nil {
			n++
		}
	}
	return n
}

// Topics of the events the monitor publishes itself.
const (
	TopicExit = "/tasks/exit"
	TopicOOM  = "/tasks/oom"
)

// Exit is the exit side of one process of a domain (its init or an exec):
// its pid once watched, the gating of its start, and the waiters for its
// exit. proc.Process holds one as its exit.
type Exit struct {
	domain *Domain
	execID string

	// guarded by domain.mu
	pid      int
	tracked  bool
	starting bool
	reaped   *Status // reaped and recorded in the node log
	exit     *Status // reported: waiters released, TaskExit queued
	neverRan *Status // never ran: waiters released, no event
	pidNS    uint64  // namespaces of the process, read when it was watched
	mntNS    uint64
	// startLogged: the start is in the node log already, written with an
	// exit reaped while the Start was being answered.
	startLogged bool
	done        chan struct{}
}

// neverRanCode is the exit status Wait reports for a process that never
// ran: containerd's "unknown exit status".
const neverRanCode = 255

// BeginStart marks a Start in progress: an exit that arrives before
// Started or StartFailed is held, so TaskExit never precedes TaskStart.
func (p *Exit) BeginStart() {
	p.domain.mu.Lock()
	p.starting = true
	p.domain.mu.Unlock()
}

// Watch ties the process to pid, created after t was taken.
func (p *Exit) Watch(t Token, pid, pidfd int) {
	p.domain.mu.Lock()
	p.pid, p.tracked = pid, true
	p.domain.mu.Unlock()
	if p.domain.mon.nodeLog != nil {
		pidNS, mntNS := namespacesOf(pid, pidfd)
		p.domain.mu.Lock()
		p.pidNS, p.mntNS = pidNS, mntNS
		p.domain.mu.Unlock()
	}
	p.domain.mon.track(t, pid, pidfd, func(st Status) { p.domain.onExit(p, st) })
}

// Started queues the start event and then releases a held exit.
func (p *Exit) Started(topic string, ev any) {
	t := p.domain
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.startLogged {
		t.queueLocked(topic, ev)
	} else {
		t.publishForLocked(p, topic, ev)
	}
	p.endStartLocked()
}

// StartFailed ends a Start without a start event. A process that runc
// never created (no pid was ever watched) will never exit: its waiters
// are released as by Abandon.
func (p *Exit) StartFailed() {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	p.endStartLocked()
	p.abandonLocked()
}

// Abandon releases the waiters of a process that never ran (its Start
// failed, or it is deleted before starting) with neverRanCode. It does
// nothing for a process that was watched: its waiters get its real exit.
// No event is published and nothing is recorded: there was no exit.
func (p *Exit) Abandon() {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	p.abandonLocked()
}

func (p *Exit) abandonLocked() {
	if p.tracked || p.exit != nil || p.neverRan != nil {
		return
	}
	p.neverRan = &Status{Code: neverRanCode, ExitedAt: time.Now()}
	close(p.done)
}

// NeverRan reports whether the process was abandoned without ever running.
func (p *Exit) NeverRan() bool {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	return p.neverRan != nil
}

func (p *Exit) endStartLocked() {
	p.starting = false
	if p.reaped != nil && !(p.execID == "" && p.domain.heldInit != nil) {
		p.domain.finishLocked(p)
	}
}

// Pid returns the process's pid, 0 before it is known.
func (p *Exit) Pid() int {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	return p.pid
}

// Exited returns the reported exit, if any.
func (p *Exit) Exited() (Status, bool) {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	if p.exit == nil {
		return Status{}, false
	}
	return *p.exit, true
}

// Reaped reports whether the process is gone, even if its exit is still
// held for ordering.
func (p *Exit) Reaped() bool {
	p.domain.mu.Lock()
	defer p.domain.mu.Unlock()
	return p.reaped != nil
}

// Wait blocks until the exit is reported (or the process is abandoned,
// see Abandon) or ctx ends. Any number of callers may wait; all get the
// same status.
func (p *Exit) Wait(ctx context.Context) (Status, error) {
	select {
	case <-p.done:
		p.domain.mu.Lock()
		defer p.domain.mu.Unlock()
		if p.neverRan != nil {
			return *p.neverRan, nil
		}
		return *p.exit, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}
