//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// Node log figures (issue 18; README.md, "Node log").
var (
	logExecs      = 200  // execs exiting at once, per build, for the log's CPU cost
	logLifecycles = 5    // pod + container + exec lifecycles measured for log bytes
	logRetained   = 1000 // pod lifecycles replayed for the retention's disk use
)

// logWatcher is a node log consumer (watchapi) that time-stamps, on
// receipt, the exited records of one burst's execs.
type logWatcher struct {
	mu   sync.Mutex
	lat  []float64
	n    int
	full chan struct{}
	err  error
}

// watchExits follows the log of b.c from now and records exit → visible
// for the execs prefix<rep>-0..n-1, until ctx ends.
func (b *bencher) watchExits(ctx context.Context, prefix string, n int) *logWatcher {
	cl, err := watchapi.Open(b.c.NodeLogDir())
	if err != nil {
		b.t.Fatal(err)
	}
	st, err := cl.List()
	if err != nil {
		b.t.Fatal(err)
	}
	want := fmt.Sprintf("%s%d-", prefix, b.rep)
	lw := &logWatcher{n: n, full: make(chan struct{})}
	go func() {
		defer cl.Close()
		for ev, err := range cl.Watch(ctx, st.Cursor) {
			now := time.Now()
			if err != nil {
				lw.mu.Lock()
				lw.err = err
				lw.mu.Unlock()
				return
			}
			r := ev.Record
			if r.Event != nodelog.EventExited || r.Kind != nodelog.KindExec || !strings.HasPrefix(r.ExecID, want) || r.ExitedAt == nil {
				continue
			}
			lw.mu.Lock()
			lw.lat = append(lw.lat, ms(now.Sub(*r.ExitedAt)))
			if len(lw.lat) == lw.n {
				close(lw.full)
			}
			lw.mu.Unlock()
		}
	}()
	return lw
}

// wait returns the latencies once all n exits were seen (fails after timeout).
func (lw *logWatcher) wait(t *testing.T, timeout time.Duration) []float64 {
	select {
	case <-lw.full:
	case <-time.After(timeout):
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.lat) != lw.n {
		t.Fatalf("node log consumer: %d of %d exits within %v (err %v)", len(lw.lat), lw.n, timeout, lw.err)
	}
	return append([]float64(nil), lw.lat...)
}

// nodeLogFigures measures, for the watch shim, what the node log costs:
// shim CPU per 1000 exits and per 1000 execs with the log on (c) and off
// (a second containerd whose environment has WATCH_NODE_LOG_DIR=off), the
// builds taking turns by repetition; the log's bytes per pod + container +
// exec lifecycle; and the disk use of 1,000 such lifecycles retained.
func nodeLogFigures(t *testing.T, c *harness.Containerd, version string, rep int) map[string]float64 {
	m := map[string]float64{}
	off := startLogOff(t, version)
	order := []*harness.Containerd{c, off}
	if rep%2 == 1 {
		order = []*harness.Containerd{off, c}
	}
	for _, cc := range order {
		b := &bencher{t: t, c: cc, rt: "watch", rep: rep}
		r, appended := b.logStorm(logExecs)
		key := "on"
		if cc == off {
			key = "off"
			if appended != 0 {
				t.Fatalf("the shim with the log off appended %v records", appended)
			}
		} else if appended == 0 {
			t.Fatal("the shim with the log on appended no record")
		}
		m["log_"+key+"_cpu_ms_per_1000_exits"] = r.schedExit * 1000 / float64(logExecs)
		m["log_"+key+"_cpu_ms_per_1000_execs"] = r.cpuAll * 1000 / float64(logExecs)
	}
	m["log_cpu_extra_pct_exits"] = 100 * (m["log_on_cpu_ms_per_1000_exits"]/m["log_off_cpu_ms_per_1000_exits"] - 1)
	m["log_cpu_extra_pct_execs"] = 100 * (m["log_on_cpu_ms_per_1000_execs"]/m["log_off_cpu_ms_per_1000_execs"] - 1)
	b := &bencher{t: t, c: c, rt: "watch", rep: rep}
	perLife, recs := b.logBytesPerLifecycle(logLifecycles)
	m["log_bytes_per_lifecycle"] = perLife
	m["log_retained_kib_1000_lifecycles"] = retainedKiB(t, recs, logRetained)
	return m
}

// startLogOff starts a containerd whose shims write no node log.
func startLogOff(t *testing.T, version string) *harness.Containerd {
	prev, had := os.LookupEnv(nodelog.DirEnv)
	os.Setenv(nodelog.DirEnv, nodelog.Off)
	defer func() {
		if had {
			os.Setenv(nodelog.DirEnv, prev)
		} else {
			os.Unsetenv(nodelog.DirEnv)
		}
	}()
	return harness.Start(t, harness.Options{Version: version, LogLevel: "info"})
}

// logStorm runs n execs exiting at once in one container of a fresh pod
// and returns the burst's figures and the shim's log_appended counter.
func (b *bencher) logStorm(n int) (burstResult, float64) {
	bp := b.fifoPod(fmt.Sprintf("log%d", b.rep), fmt.Sprintf("trig-log-%d", b.rep), "l0")
	r := b.burst(bp.tc, bp.fifo, bp.ctrs, n, "l", nil)
	pids := b.c.ShimPids(b.rt)
	if len(pids) != 1 {
		b.t.Fatalf("shims %v, want one", pids)
	}
	appended := watchCounter(b.t, pids[0], "log_appended")
	b.removePods([]string{bp.podID})
	return r, appended
}

// logBytesPerLifecycle runs n pod + container + exec lifecycles through CRI
// and returns the growth of the log's segments per lifecycle, and the
// records the lifecycles wrote.
func (b *bencher) logBytesPerLifecycle(n int) (float64, []nodelog.Record) {
	t, c := b.t, b.c
	cl, err := watchapi.Open(c.NodeLogDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before, err := cl.List()
	if err != nil {
		t.Fatal(err)
	}
	size0 := segmentBytes(t, c.NodeLogDir())
	for i := range n {
		p := harness.Pod{Name: fmt.Sprintf("life%d-%d", b.rep, i)}
		podPath := b.json("pod-"+p.Name, c.PodConfig(p))
		podID := b.crictl("runp", "--runtime", b.rt, podPath)
		ct := harness.Container{Name: "app", Command: []string{"sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"}}
		id := b.crictl("create", podID, b.json("ctr", c.ContainerConfig(ct)), podPath)
		b.crictl("start", id)
		c.Crictl("exec", id, "sh", "-c", "exit 4")
		b.crictl("stop", "--timeout", "10", id)
		b.crictl("rm", id)
		b.crictl("stopp", podID)
		b.crictl("rmp", podID)
	}
	after, err := cl.List()
	if err != nil {
		t.Fatal(err)
	}
	grown := segmentBytes(t, c.NodeLogDir()) - size0
	var recs []nodelog.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ev, err := range cl.Watch(ctx, before.Cursor) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, ev.Record)
		if ev.Cursor == after.Cursor {
			break
		}
	}
	return float64(grown) / float64(n), recs
}

// segmentBytes sums the sizes of the log's segments in dir.
func segmentBytes(t *testing.T, dir string) int64 {
	files, err := filepath.Glob(filepath.Join(dir, "seg-*"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// retainedKiB appends the records of real lifecycles again and again (ids
// made unique) to a fresh log with the default segment size and retention
// until `lifecycles` lifecycles are in it, and returns the disk use of its
// directory in KiB: what the log holds when that many pods came and went
// within the retention window.
func retainedKiB(t *testing.T, recs []nodelog.Record, lifecycles int) float64 {
	pods := 0
	for _, r := range recs {
		if r.Kind == nodelog.KindSandbox && r.Event == nodelog.EventCreated {
			pods++
		}
	}
	if pods == 0 {
		t.Fatal("no pod lifecycle in the records")
	}
	dir := filepath.Join(t.TempDir(), "log")
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round := 0; round*pods < lifecycles; round++ {
		for _, r := range recs {
			r.Rev = 0
			r.ContainerID = fmt.Sprintf("%s-%d", r.ContainerID, round)
			if r.SandboxID != "" {
				r.SandboxID = fmt.Sprintf("%s-%d", r.SandboxID, round)
			}
			if _, err := w.Append(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
	var blocks int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			blocks += diskBytes(fi)
		}
	}
	return float64(blocks) / 1024
}

// TestNodeLogLab runs the node log figures only: per repetition (BENCH_REPS,
// default 2), the 200-exec burst's exit → visible (containerd subscriber
// for the stock shim, node log consumer for watch), then nodeLogFigures.
//
//	cd tests/bench && go test -tags 'bench e2e' -count=1 -v -run '^TestNodeLogLab$' .
func TestNodeLogLab(t *testing.T) {
	c, names, _, reps := startLab(t, 2)
	for rep := 0; rep < reps; rep++ {
		for _, name := range names {
			rt := runtimeFor(nil, name)
			if rt == "" {
				continue
			}
			b := &bencher{t: t, c: c, rt: rt, rep: rep, m: map[string]float64{}}
			bp := b.burstPod()
			b.eventFigures(bp)
			b.removePods([]string{bp.podID})
			t.Logf("rep %d %s: exit → visible p50 %.1f p99 %.1f ms (TaskExit at subscriber p50 %.1f p99 %.1f ms)", rep, name,
				b.m["exit_visible_p50_ms"], b.m["exit_visible_p99_ms"], b.m["exit_event_p50_ms"], b.m["exit_event_p99_ms"])
		}
		if os.Getenv("BENCH_ONLY") == "runc" {
			continue
		}
		t.Logf("rep %d watch node log: %s", rep, fmtMetrics(nodeLogFigures(t, c, "2.4", rep)))
	}
}

// diskBytes is the disk space fi's file takes (its blocks).
func diskBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
