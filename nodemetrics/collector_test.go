package nodemetrics

import (
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// testLog is a node log in a temp dir and a Collector reading it.
type testLog struct {
	t   *testing.T
	dir string
	w   *nodelog.Writer
	c   *Collector
}

func newTestLog(t *testing.T, retention time.Duration) *testLog {
	dir := filepath.Join(t.TempDir(), "log")
	c := New(Options{LogDir: dir, ProcDir: t.TempDir(), Retention: retention, Logger: log.New(io.Discard, "", 0)})
	return &testLog{t: t, dir: dir, c: c}
}

// open creates the log (as the first shim's append would).
func (l *testLog) open() {
	w, err := nodelog.Open(l.dir, nodelog.Options{})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { w.Close() })
	l.w = w
}

// pod is the identity of one test pod.
type pod struct{ name, uid, sandbox string }

var (
	web   = pod{"web", "uid-web", "sb-web"}
	batch = pod{"batch", "uid-batch", "sb-batch"}
)

// rec appends a record of p's container name (kind from the arguments).
func (l *testLog) rec(p pod, event, kind, container, id, exec string, code int, mod ...func(*nodelog.Record)) {
	l.t.Helper()
	r := &nodelog.Record{
		Time: time.Now().UTC(), Event: event, Kind: kind, Namespace: "k8s.io", SandboxID: p.sandbox,
		ContainerID: id, ExecID: exec, PodName: p.name, PodNamespace: "default", PodUID: p.uid, ContainerName: container,
	}
	if code >= 0 {
		c := uint32(code)
		at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		r.ExitStatus, r.ExitedAt = &c, &at
	}
	for _, m := range mod {
		m(r)
	}
	if _, err := l.w.Append(r); err != nil {
		l.t.Fatal(err)
	}
}

// compare checks the exposition of the named metrics.
func (l *testLog) compare(want string, names ...string) {
	l.t.Helper()
	if err := testutil.CollectAndCompare(l.c, strings.NewReader(want), names...); err != nil {
		l.t.Error(err)
	}
}

const exitsHelp = `# HELP watch_exits_total Exits recorded in the node log since the collector started, by kind (sandbox, container, exec), reason and exit code.
# TYPE watch_exits_total counter
`

const lastHelp = `# HELP watch_container_last_terminated_exit_code Exit code of the container's last termination.
# TYPE watch_container_last_terminated_exit_code gauge
`

// A log that did not exist at the first scrape is counted from its first
// record: exits by kind, reason (OOM from the oom record, the exit of a dead
// shim's task from its deletion) and code, each once; the container's last
// termination is its latest exit.
func TestCollectorCountsExitsFromTheLog(t *testing.T) {
	l := newTestLog(t, time.Hour)
	l.compare("# HELP watch_nodelog_up 1 if the node log was read at this scrape, 0 if it could not be (missing, unreadable).\n# TYPE watch_nodelog_up gauge\nwatch_nodelog_up 0\n", "watch_nodelog_up")
	l.open()
	l.rec(web, nodelog.EventCreated, nodelog.KindSandbox, "", "sb-web", "", -1)
	l.rec(web, nodelog.EventCreated, nodelog.KindContainer, "app", "c1", "", -1)
	for i, code := range []int{3, 3, 0} {
		exec := []string{"e1", "e2", "e3"}[i]
		l.rec(web, nodelog.EventExited, nodelog.KindExec, "app", "c1", exec, code)
		l.rec(web, nodelog.EventDeleted, nodelog.KindExec, "app", "c1", exec, -1)
	}
	l.rec(web, nodelog.EventExited, nodelog.KindContainer, "app", "c1", "", 1)
	l.rec(web, nodelog.EventDeleted, nodelog.KindContainer, "app", "c1", "", 1, func(r *nodelog.Record) { r.ExitedAt = nil })
	l.rec(web, nodelog.EventCreated, nodelog.KindContainer, "app", "c2", "", -1) // its restart
	l.rec(web, nodelog.EventOOM, nodelog.KindContainer, "app", "c2", "", -1)
	l.rec(web, nodelog.EventExited, nodelog.KindContainer, "app", "c2", "", 137)
	// A task whose shim died: `shim delete` records the exit with the deletion.
	l.rec(batch, nodelog.EventCreated, nodelog.KindContainer, "job", "c3", "", -1)
	l.rec(batch, nodelog.EventDeleted, nodelog.KindContainer, "job", "c3", "", 2)
	l.compare(exitsHelp+`
watch_exits_total{container="app",exit_code="0",kind="exec",namespace="default",pod="web",reason="Completed",uid="uid-web"} 1
watch_exits_total{container="app",exit_code="3",kind="exec",namespace="default",pod="web",reason="Error",uid="uid-web"} 2
watch_exits_total{container="app",exit_code="1",kind="container",namespace="default",pod="web",reason="Error",uid="uid-web"} 1
watch_exits_total{container="app",exit_code="137",kind="container",namespace="default",pod="web",reason="OOMKilled",uid="uid-web"} 1
watch_exits_total{container="job",exit_code="2",kind="container",namespace="default",pod="batch",reason="Error",uid="uid-batch"} 1
`, "watch_exits_total")
	l.compare(lastHelp+`
watch_container_last_terminated_exit_code{container="app",namespace="default",pod="web",uid="uid-web"} 137
watch_container_last_terminated_exit_code{container="job",namespace="default",pod="batch",uid="uid-batch"} 2
# HELP watch_container_last_terminated_reason Reason of the container's last termination (Completed, Error, OOMKilled): 1 for the reason.
# TYPE watch_container_last_terminated_reason gauge
watch_container_last_terminated_reason{container="app",namespace="default",pod="web",reason="OOMKilled",uid="uid-web"} 1
watch_container_last_terminated_reason{container="job",namespace="default",pod="batch",reason="Error",uid="uid-batch"} 1
# HELP watch_container_last_terminated_timestamp_seconds Time of the container's last termination, in seconds since the epoch.
# TYPE watch_container_last_terminated_timestamp_seconds gauge
watch_container_last_terminated_timestamp_seconds{container="app",namespace="default",pod="web",uid="uid-web"} 1.7961264e+09
watch_container_last_terminated_timestamp_seconds{container="job",namespace="default",pod="batch",uid="uid-batch"} 1.7961264e+09
`, "watch_container_last_terminated_exit_code", "watch_container_last_terminated_reason", "watch_container_last_terminated_timestamp_seconds")
	// A second scrape adds nothing: each record is counted once.
	l.compare(exitsHelp+`
watch_exits_total{container="app",exit_code="0",kind="exec",namespace="default",pod="web",reason="Completed",uid="uid-web"} 1
watch_exits_total{container="app",exit_code="3",kind="exec",namespace="default",pod="web",reason="Error",uid="uid-web"} 2
watch_exits_total{container="app",exit_code="1",kind="container",namespace="default",pod="web",reason="Error",uid="uid-web"} 1
watch_exits_total{container="app",exit_code="137",kind="container",namespace="default",pod="web",reason="OOMKilled",uid="uid-web"} 1
watch_exits_total{container="job",exit_code="2",kind="container",namespace="default",pod="batch",reason="Error",uid="uid-batch"} 1
`, "watch_exits_total")
}

// A log that existed before the collector started: what ended before is
// the containers' last termination, not news; what follows is counted, and
// a deletion repeating a counted exit is not counted again.
func TestCollectorStartsFromTheLogState(t *testing.T) {
	l := newTestLog(t, time.Hour)
	l.open()
	l.rec(web, nodelog.EventCreated, nodelog.KindContainer, "app", "c1", "", -1)
	l.rec(web, nodelog.EventExited, nodelog.KindContainer, "app", "c1", "", 4)
	l.compare("", "watch_exits_total")
	l.compare(lastHelp+`watch_container_last_terminated_exit_code{container="app",namespace="default",pod="web",uid="uid-web"} 4
`, "watch_container_last_terminated_exit_code")
	l.rec(web, nodelog.EventDeleted, nodelog.KindContainer, "app", "c1", "", 4)
	l.rec(web, nodelog.EventCreated, nodelog.KindContainer, "app", "c2", "", -1)
	l.rec(web, nodelog.EventExited, nodelog.KindContainer, "app", "c2", "", 0)
	l.rec(web, nodelog.EventDeleted, nodelog.KindContainer, "app", "c2", "", 0)
	l.compare(exitsHelp+`watch_exits_total{container="app",exit_code="0",kind="container",namespace="default",pod="web",reason="Completed",uid="uid-web"} 1
`, "watch_exits_total")
}

// The series of a pod whose sandbox was deleted longer than the retention
// ago are gone; those of a pod deleted just now stay.
func TestCollectorForgetsDeletedPodsAfterRetention(t *testing.T) {
	l := newTestLog(t, time.Hour)
	l.collect()
	l.open()
	for _, p := range []pod{web, batch} {
		l.rec(p, nodelog.EventCreated, nodelog.KindSandbox, "", p.sandbox, "", -1)
		l.rec(p, nodelog.EventExited, nodelog.KindContainer, "app", "c-"+p.name, "", 1)
		l.rec(p, nodelog.EventDeleted, nodelog.KindContainer, "app", "c-"+p.name, "", 1)
	}
	l.rec(web, nodelog.EventDeleted, nodelog.KindSandbox, "", web.sandbox, "", 0, func(r *nodelog.Record) {
		r.Time = time.Now().Add(-2 * time.Hour)
	})
	l.rec(batch, nodelog.EventDeleted, nodelog.KindSandbox, "", batch.sandbox, "", 0)
	l.compare(lastHelp+`watch_container_last_terminated_exit_code{container="app",namespace="default",pod="batch",uid="uid-batch"} 1
`, "watch_container_last_terminated_exit_code")
	if n := testutil.CollectAndCount(l.c, "watch_exits_total"); n != 2 { // batch: its sandbox's and its container's exit
		t.Errorf("%d exits_total series, want 2 (pod batch's)", n)
	}
}

// collect scrapes once.
func (l *testLog) collect() { testutil.CollectAndCount(l.c) }

// A log directory that cannot be read gives nodelog_up 0 and the other
// metrics, never a failed scrape.
func TestCollectorUnreadableLog(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := New(Options{LogDir: file, ProcDir: t.TempDir(), Logger: log.New(io.Discard, "", 0)})
	want := `# HELP watch_nodelog_up 1 if the node log was read at this scrape, 0 if it could not be (missing, unreadable).
# TYPE watch_nodelog_up gauge
watch_nodelog_up 0
# HELP watch_shims Running watch shim servers writing this node log.
# TYPE watch_shims gauge
watch_shims 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "watch_nodelog_up", "watch_shims"); err != nil {
		t.Error(err)
	}
}
