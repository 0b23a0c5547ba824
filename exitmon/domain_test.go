package exitmon

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

const (
	topicCreate = "/tasks/create"
	topicStart  = "/tasks/start"
	topicDelete = "/tasks/delete"
)

// newTestTask returns a monitor whose node log is in a temporary
// directory (returned last) and a task of it.
func newTestTask(t *testing.T, id string) (*Monitor, *Domain, *recorder, string) {
	t.Helper()
	rec := newRecorder()
	m := New(rec)
	logDir := filepath.Join(t.TempDir(), "log")
	w, err := nodelog.Open(logDir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	m.SetNodeLog(w)
	tk, err := m.NewDomain(t.TempDir(), Identity{ID: id, Namespace: "default", Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	return m, tk, rec, logDir
}

// loggedState returns what the node log in dir lists as alive.
func loggedState(t *testing.T, dir string) *nodelog.State {
	t.Helper()
	r, err := nodelog.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, _, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// loggedExit returns the exit the node log in dir holds for exec execID
// ("": the init) of task c1.
func loggedExit(t *testing.T, dir, execID string) (nodelog.Record, bool) {
	t.Helper()
	rec, ok := loggedState(t, dir).Get(nodelog.Key{Namespace: "default", ContainerID: "c1", ExecID: execID})
	return rec, ok && rec.ExitStatus != nil
}

// watch ties p to a fake pid, as a Start would.
func watch(m *Monitor, p *Exit, pid int) {
	tok := m.Begin()
	p.Watch(tok, pid, -1)
}

// summary renders events as "topic[:exec]:code" strings for comparison.
func summary(evs []event) []string {
	var out []string
	for _, e := range evs {
		switch v := e.ev.(type) {
		case ExitEvent:
			out = append(out, fmt.Sprintf("exit:%s:%d", v.ExecID, v.Code))
		case OOMEvent:
			out = append(out, "oom:"+v.ContainerID)
		default:
			out = append(out, e.topic)
		}
	}
	return out
}

func wantEvents(t *testing.T, rec *recorder, want ...string) {
	t.Helper()
	rec.waitFor(t, len(want))
	got := summary(rec.settle())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestManyWaiters: every waiter is released once, all with the same status.
func TestManyWaiters(t *testing.T) {
	m, tk, _, _ := newTestTask(t, "c1")
	p := tk.Init()
	pid := fakePid(10)
	watch(m, p, pid)

	const n = 100
	var wg sync.WaitGroup
	res := make(chan Status, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := p.Wait(context.Background())
			if err != nil {
				errs <- err
				return
			}
			res <- st
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if len(res) != 0 {
		t.Fatal("waiter released before the exit")
	}
	m.inject(pid, 42)
	wg.Wait()
	close(res)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var first *Status
	count := 0
	for st := range res {
		count++
		if first == nil {
			first = &st
		}
		if st.Code != 42 || st.Pid != pid || !st.ExitedAt.Equal(first.ExitedAt) {
			t.Fatalf("waiter got %+v, first got %+v", st, *first)
		}
	}
	if count != n {
		t.Fatalf("%d waiters released, want %d", count, n)
	}
	// A late waiter gets the same status at once.
	st, err := p.Wait(context.Background())
	if err != nil || st.Code != 42 {
		t.Fatalf("late Wait = %+v, %v", st, err)
	}
}

// TestWaitCancelled: Wait returns the context's error when it ends first.
func TestWaitCancelled(t *testing.T) {
	_, tk, _, _ := newTestTask(t, "c1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tk.Init().Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := tk.Init().Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want context.DeadlineExceeded", err)
	}
}

// TestRealChildWaiters: the whole path over a real child process.
func TestRealChildWaiters(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	p := tk.Init()
	tok := m.Begin()
	p.BeginStart()
	cmd := exec.Command("/bin/sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reapUntil(t, m, "early exit", func() bool { return m.hasUnclaimed(cmd.Process.Pid) })
	p.Watch(tok, cmd.Process.Pid, -1)
	if !p.Reaped() {
		t.Fatal("early exit not matched to the process")
	}
	if _, ok := p.Exited(); ok {
		t.Fatal("exit reported before Started")
	}
	p.Started(topicStart, "start")
	st, err := p.Wait(context.Background())
	if err != nil || st.Code != 3 || st.Pid != cmd.Process.Pid {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	if p.Pid() != cmd.Process.Pid {
		t.Fatalf("Pid = %d", p.Pid())
	}
	wantEvents(t, rec, topicStart, "exit::3")
}

// TestExitHeldUntilStarted: an exit before Started is held, so TaskExit
// follows TaskStart.
func TestExitHeldUntilStarted(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	tk.Publish(topicCreate, "create")
	p := tk.Init()
	p.BeginStart()
	pid := fakePid(11)
	watch(m, p, pid)
	m.inject(pid, 1)
	if !p.Reaped() {
		t.Fatal("not reaped")
	}
	select {
	case <-p.done:
		t.Fatal("waiters released before Started")
	default:
	}
	if got := summary(rec.settle()); !reflect.DeepEqual(got, []string{topicCreate}) {
		t.Fatalf("events before Started: %q", got)
	}
	p.Started(topicStart, "start")
	wantEvents(t, rec, topicCreate, topicStart, "exit::1")
	if st, ok := p.Exited(); !ok || st.Code != 1 {
		t.Fatalf("Exited = %+v, %v", st, ok)
	}
}

// TestStartFailedReleasesExit: StartFailed releases a held exit without a
// start event.
func TestStartFailedReleasesExit(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	p := tk.Init()
	p.BeginStart()
	pid := fakePid(12)
	watch(m, p, pid)
	m.inject(pid, 2)
	p.StartFailed()
	wantEvents(t, rec, "exit::2")
}

// TestExecExitBeforeInitExit: the init reaped first is held until the
// running execs' exits are reported.
func TestExecExitBeforeInitExit(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	initPid, e1Pid, e2Pid := fakePid(20), fakePid(21), fakePid(22)
	p := tk.Init()
	p.BeginStart()
	watch(m, p, initPid)
	p.Started(topicStart, "start")
	var execs []*Exit
	for i, pid := range []int{e1Pid, e2Pid} {
		e, err := tk.AddExec(fmt.Sprintf("e%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		e.BeginStart()
		watch(m, e, pid)
		e.Started("/tasks/exec-started", "exec-started")
		execs = append(execs, e)
	}
	if _, err := tk.AddExec("e1"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate AddExec = %v, want AlreadyExists", err)
	}

	m.inject(initPid, 137)
	if !p.Reaped() {
		t.Fatal("init not reaped")
	}
	if _, ok := p.Exited(); ok {
		t.Fatal("init exit reported while execs run")
	}
	m.inject(e2Pid, 5)
	if _, ok := p.Exited(); ok {
		t.Fatal("init exit reported while an exec runs")
	}
	m.inject(e1Pid, 6)
	if st, ok := p.Exited(); !ok || st.Code != 137 {
		t.Fatalf("init Exited = %+v, %v after the last exec", st, ok)
	}
	for i, want := range []int{6, 5} {
		if st, ok := execs[i].Exited(); !ok || st.Code != want {
			t.Errorf("exec e%d Exited = %+v, %v, want %d", i+1, st, ok, want)
		}
	}
	// The execs' exits have no order among themselves (they are sent
	// concurrently); both precede the init's.
	rec.waitFor(t, 6)
	got := summary(rec.settle())
	if len(got) == 6 && got[3] > got[4] {
		got[3], got[4] = got[4], got[3]
	}
	if want := []string{topicStart, "/tasks/exec-started", "/tasks/exec-started", "exit:e1:6", "exit:e2:5", "exit::137"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events %q, want %q (the exec exits in any order)", got, want)
	}
}

// TestStartingExecHoldsInit: an exec reaped while its Start is still being
// answered keeps the init held too; Started releases both, in order.
func TestStartingExecHoldsInit(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	initPid, ePid := fakePid(30), fakePid(31)
	p := tk.Init()
	p.BeginStart()
	watch(m, p, initPid)
	p.Started(topicStart, "start")
	e, _ := tk.AddExec("e1")
	e.BeginStart()
	watch(m, e, ePid)
	m.inject(ePid, 9)
	m.inject(initPid, 0)
	if _, ok := p.Exited(); ok {
		t.Fatal("init exit reported before the exec's")
	}
	e.Started("/tasks/exec-started", "exec-started")
	wantEvents(t, rec, topicStart, "/tasks/exec-started", "exit:e1:9", "exit::0")
}

// TestUnstartedExecDoesNotHoldInit: an exec that was added but never
// started does not hold the init exit.
func TestUnstartedExecDoesNotHoldInit(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	pid := fakePid(40)
	p := tk.Init()
	watch(m, p, pid)
	if _, err := tk.AddExec("never"); err != nil {
		t.Fatal(err)
	}
	m.inject(pid, 0)
	if _, ok := p.Exited(); !ok {
		t.Fatal("init held by an exec that never started")
	}
	wantEvents(t, rec, "exit::0")
}

// TestNothingAfterDelete: Delete's event is the last one; later events and
// exits are dropped, and the drained channel closes once it is sent.
func TestNothingAfterDelete(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	pid, ePid := fakePid(50), fakePid(51)
	p := tk.Init()
	watch(m, p, pid)
	e, _ := tk.AddExec("e1")
	watch(m, e, ePid)
	tk.RemoveExec("e1") // the exec no longer holds the init
	m.inject(pid, 0)
	drained := tk.Delete(topicDelete, "delete")
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("drained not closed")
	}
	tk.Publish(topicStart, "late")
	m.inject(ePid, 1)
	got := summary(rec.settle())
	if want := []string{"exit::0", topicDelete}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// TestOOMBeforeInitExit: when the OOM check says so, TaskOOM precedes the
// init's TaskExit and the exit is marked OOM, in the node log too.
func TestOOMBeforeInitExit(t *testing.T) {
	for _, oom := range []bool{true, false} {
		t.Run(fmt.Sprint("oom=", oom), func(t *testing.T) {
			m, tk, rec, logDir := newTestTask(t, "c1")
			pid := fakePid(60)
			checked, hooked := 0, 0
			tk.SetOOMCheck(func() bool { checked++; return oom })
			tk.SetInitExitHook(func() {
				hooked++
				if _, ok := tk.Init().Exited(); ok {
					t.Error("init exit hook ran after the exit was reported")
				}
			})
			p := tk.Init()
			watch(m, p, pid)
			m.inject(pid, 137)
			if checked != 1 || hooked != 1 {
				t.Fatalf("OOM check ran %d times, hook %d, want 1 and 1", checked, hooked)
			}
			if oom {
				wantEvents(t, rec, "oom:c1", "exit::137")
			} else {
				wantEvents(t, rec, "exit::137")
			}
			if st, _ := p.Exited(); st.OOM != oom {
				t.Fatalf("exit OOM = %v, want %v", st.OOM, oom)
			}
			ev := rec.snapshot()
			if x := ev[len(ev)-1].ev.(ExitEvent); x.OOM != oom || x.ContainerID != "c1" || x.Pid != pid {
				t.Fatalf("exit event %+v", x)
			}
			if r, ok := loggedExit(t, logDir, ""); !ok || r.OOM != oom || *r.ExitStatus != 137 || r.Signal != 9 {
				t.Fatalf("logged init exit %+v", r)
			}
		})
	}
}

// TestExitLoggedBeforeReported: by the time a waiter is released the
// exit is in the node log, with the task's identity.
func TestExitLoggedBeforeReported(t *testing.T) {
	m, tk, _, logDir := newTestTask(t, "c1")
	pid := fakePid(70)
	e, _ := tk.AddExec("e1")
	watch(m, e, pid)
	go m.inject(pid, 12)
	if _, err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, ok := loggedExit(t, logDir, "e1")
	if !ok || *r.ExitStatus != 12 || r.Pid != pid {
		t.Fatalf("logged exec exit %+v", r)
	}
	if r.ContainerID != "c1" || r.Kind != nodelog.KindExec || r.Namespace != "default" {
		t.Fatalf("logged identity %+v", r)
	}
}

// TestAbandonPublishesNothing: an abandoned task sends nothing, ever.
func TestAbandonPublishesNothing(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	pid := fakePid(80)
	p := tk.Init()
	watch(m, p, pid)
	tk.Abandon()
	tk.Publish(topicCreate, "create")
	m.inject(pid, 1)
	if got := rec.settle(); len(got) != 0 {
		t.Fatalf("abandoned task published %v", summary(got))
	}
	select {
	case <-tk.q.drained:
	default:
		t.Fatal("abandoned task's queue not drained")
	}
	if c := m.Counters(); c.EventsQueued != 0 {
		t.Fatalf("events queued for an abandoned task: %+v", c)
	}
}

// TestRemoveExecLeavesLog: once an exec is deleted the log no longer lists
// it; the init's exit and undeleted execs' exits it still does.
func TestRemoveExecLeavesLog(t *testing.T) {
	m, tk, _, logDir := newTestTask(t, "c1")
	for i, id := range []string{"gone", "kept"} {
		e, _ := tk.AddExec(id)
		pid := fakePid(80 + i)
		watch(m, e, pid)
		m.inject(pid, 5+i)
	}
	tk.RemoveExec("gone")
	tk.RemoveExec("never-added")
	pid := fakePid(90)
	watch(m, tk.Init(), pid)
	m.inject(pid, 0)
	if r, ok := loggedExit(t, logDir, "gone"); ok {
		t.Fatalf("deleted exec still listed: %+v", r)
	}
	if r, ok := loggedExit(t, logDir, "kept"); !ok || *r.ExitStatus != 6 {
		t.Fatalf("logged exec kept %+v", r)
	}
	if r, ok := loggedExit(t, logDir, ""); !ok || r.Pid != pid {
		t.Fatalf("logged init %+v", r)
	}
}
