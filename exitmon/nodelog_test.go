package exitmon

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// logged returns every record of the log in dir, in order.
func logged(t *testing.T, dir string) []nodelog.Record {
	t.Helper()
	r, err := nodelog.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, cur, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []nodelog.Record
	if cur.Rev == 0 {
		return nil
	}
	stop := errors.New("stop")
	err = r.Follow(context.Background(), nodelog.Cursor{Log: r.LogID()}, func(rec *nodelog.Record) error {
		out = append(out, *rec)
		if rec.Rev == cur.Rev {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	return out
}

// pubChecker is a Publisher that, at each delivery, checks the node log
// already holds the event's record.
type pubChecker struct {
	*recorder
	t   *testing.T
	dir string
	bad chan string
}

func (p *pubChecker) Publish(ctx context.Context, topic string, ev any) error {
	want := events[topic]
	recs := logged(p.t, p.dir)
	found := false
	for _, r := range recs {
		found = found || r.Event == want
	}
	if !found {
		p.bad <- topic
	}
	return p.recorder.Publish(ctx, topic, ev)
}

type startEv struct{ Pid uint32 }

func (e startEv) GetPid() uint32 { return e.Pid }

type execEv struct{ ExecID string }

func (e execEv) GetExecID() string { return e.ExecID }

// TestNodeLogRecords runs a real child as a task's init and an exec, and
// checks that each transition is in the node log, with the task's identity
// and the child's namespaces, before its event is published and before
// Wait returns; and that the log's order is the events' order.
func TestNodeLogRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pc := &pubChecker{recorder: newRecorder(), t: t, dir: dir, bad: make(chan string, 10)}
	m := New(pc)
	m.SetNodeLog(w)
	id := Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "s1", PodName: "p", PodNamespace: "default", PodUID: "u", ContainerName: "app", Image: "busybox"}
	tk, err := m.NewDomain(t.TempDir(), id)
	if err != nil {
		t.Fatal(err)
	}
	p := tk.Init()
	tok := m.Begin()
	cmd := exec.Command("/bin/sh", "-c", "read x; exit 3")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.Watch(tok, cmd.Process.Pid, -1)
	tk.Publish(topicCreate, startEv{Pid: uint32(cmd.Process.Pid)})
	p.BeginStart()
	p.Started(topicStart, startEv{Pid: uint32(cmd.Process.Pid)})
	ex, _ := tk.AddExec("e1")
	tk.Publish("/tasks/exec-added", execEv{ExecID: "e1"})
	ex.BeginStart()
	watch(m, ex, fakePid(40))
	ex.Started("/tasks/exec-started", execEv{ExecID: "e1"})
	m.inject(fakePid(40), 5)
	stdin.Close()
	reapUntil(t, m, "init exit", p.Reaped)
	if _, err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := logged(t, dir)
	if last := recs[len(recs)-1]; last.Event != nodelog.EventExited || last.ExecID != "" || *last.ExitStatus != 3 {
		t.Fatalf("Wait returned before the log had the exit: %+v", last)
	}
	tk.RemoveExec("e1")
	<-tk.Delete(topicDelete, "delete")
	pc.waitFor(t, 7)
	select {
	case topic := <-pc.bad:
		t.Fatalf("%s published before the node log had it", topic)
	default:
	}
	recs = logged(t, dir)
	var got []string
	for _, r := range recs {
		got = append(got, r.Event+"/"+r.Kind+"/"+r.ExecID)
		if r.PodName != "p" || r.PodUID != "u" || r.ContainerName != "app" || r.Image != "busybox" || r.SandboxID != "s1" || r.Namespace != "k8s.io" {
			t.Fatalf("record without the identity: %+v", r)
		}
	}
	want := []string{"created/container/", "started/container/", "exec_added/exec/e1", "exec_started/exec/e1",
		"exited/exec/e1", "exited/container/", "deleted/exec/e1", "deleted/container/"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("log %q, want %q", got, want)
	}
	var self syscall.Stat_t
	syscall.Stat("/proc/self/ns/pid", &self)
	if recs[1].Pid != cmd.Process.Pid || recs[1].PidNS != self.Ino || recs[1].MntNS == 0 {
		t.Fatalf("started record: pid %d pidns %d mntns %d, want %d %d", recs[1].Pid, recs[1].PidNS, recs[1].MntNS, cmd.Process.Pid, self.Ino)
	}
	if c := m.Counters(); c.LogAppended != 8 || c.LogFailed != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// failLog refuses every record, as a full or unwritable log does.
type failLog struct{}

func (failLog) Append(...*nodelog.Record) (uint64, error) { return 0, syscall.ENOSPC }

// TestNodeLogFailureDoesNotStopExits: with a log that refuses every record,
// exits still reach waiters and the publisher, and the failures are counted.
func TestNodeLogFailureDoesNotStopExits(t *testing.T) {
	m, tk, rec, _ := newTestTask(t, "c1")
	m.SetNodeLog(failLog{})
	p := tk.Init()
	p.BeginStart()
	pid := fakePid(41)
	watch(m, p, pid)
	p.Started(topicStart, "start")
	m.inject(pid, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := p.Wait(ctx); err != nil || st.Code != 7 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	wantEvents(t, rec, topicStart, "exit::7")
	if c := m.Counters(); c.LogFailed != 2 || c.LogAppended != 0 {
		t.Fatalf("counters %+v, want 2 failed appends", c)
	}
}

// countingLog counts the writes (Append calls) made to a log.
type countingLog struct {
	NodeLog
	mu     sync.Mutex
	writes int
}

func (c *countingLog) Append(rs ...*nodelog.Record) (uint64, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.NodeLog.Append(rs...)
}

func (c *countingLog) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.writes }

// withCountingLog puts a write counter in front of m's node log.
func withCountingLog(m *Monitor) *countingLog {
	c := &countingLog{NodeLog: m.nodeLog}
	m.SetNodeLog(c)
	return c
}

// logEvents renders the node log in dir as event/exec strings.
func logEvents(t *testing.T, dir string) []string {
	var got []string
	for _, r := range logged(t, dir) {
		got = append(got, r.Event+"/"+r.ExecID)
	}
	return got
}

// TestExitOneWrite: an exit is one write to the node log, made as it is
// reaped, even when it arrives while its Start is being answered: the
// start is then written with it, before it, and not again when the Start
// ends; containerd still gets the start first.
func TestExitOneWrite(t *testing.T) {
	m, tk, rec, dir := newTestTask(t, "c1")
	c := withCountingLog(m)
	p := tk.Init()
	watch(m, p, fakePid(42))
	p.BeginStart()
	p.Started(topicStart, startEv{Pid: uint32(fakePid(42))})
	e, _ := tk.AddExec("e1")
	e.BeginStart()
	watch(m, e, fakePid(43))
	before := c.count()
	m.inject(fakePid(43), 4) // the exec is gone before its Start returns
	if n := c.count() - before; n != 1 {
		t.Fatalf("exit reaped during its Start: %d writes, want 1", n)
	}
	if e.Reaped() != true {
		t.Fatal("exit not reaped")
	}
	if _, ok := e.Exited(); ok {
		t.Fatal("exit reported before its Start ended")
	}
	e.Started("/tasks/exec-started", execEv{ExecID: "e1"})
	if n := c.count() - before; n != 1 {
		t.Fatalf("Start after its exit wrote again: %d writes", n)
	}
	before = c.count()
	m.inject(fakePid(42), 0)
	if n := c.count() - before; n != 1 {
		t.Fatalf("init exit: %d writes, want 1", n)
	}
	wantEvents(t, rec, topicStart, "/tasks/exec-started", "exit:e1:4", "exit::0")
	want := []string{"started/", "exec_started/e1", "exited/e1", "exited/"}
	if got := logEvents(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("log %q, want %q", got, want)
	}
	if r := logged(t, dir)[1]; r.Pid != fakePid(43) || r.Kind != nodelog.KindExec {
		t.Fatalf("start written with the exit: %+v", r)
	}
}

// TestHeldInitExitLoggedWhenReaped: an init that exits while an exec runs
// is in the node log as it is reaped (the exit's one write, which `shim
// delete` reads after a crash), while containerd is told of it only after
// the exec's exit.
func TestHeldInitExitLoggedWhenReaped(t *testing.T) {
	m, tk, rec, dir := newTestTask(t, "c1")
	p := tk.Init()
	watch(m, p, fakePid(44))
	e, _ := tk.AddExec("e1")
	watch(m, e, fakePid(45))
	m.inject(fakePid(44), 137)
	if r, ok := loggedExit(t, dir, ""); !ok || *r.ExitStatus != 137 {
		t.Fatalf("held init exit not in the log: %+v", r)
	}
	if _, ok := p.Exited(); ok {
		t.Fatal("init exit reported while its exec runs")
	}
	m.inject(fakePid(45), 137)
	wantEvents(t, rec, "exit:e1:137", "exit::137")
	if got, want := logEvents(t, dir), []string{"exited/", "exited/e1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log %q, want %q", got, want)
	}
}
