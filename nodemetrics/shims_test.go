package nodemetrics

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// fakeProc writes /proc/PID/{exe,environ,cmdline} under root.
func fakeProc(t *testing.T, root string, pid, exe string, env, args []string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	join := func(s []string) []byte { return []byte(strings.Join(s, "\x00") + "\x00") }
	for name, b := range map[string][]byte{"environ": join(env), "cmdline": join(args)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Shim servers writing the collector's log are found (also after their
// binary was replaced), with the task and namespace they were started
// for; `start` (no socket), other logs, other binaries are not.
func TestFindShims(t *testing.T) {
	proc := t.TempDir()
	const bin = "/usr/local/bin/containerd-shim-watch-v2"
	args := []string{bin, "-namespace", "k8s.io", "-id", "sb1", "-address", "/run/containerd/containerd.sock"}
	sock := socketEnv + "=unix:///run/containerd/s/abc"
	fakeProc(t, proc, "10", bin, []string{"PATH=/bin", sock}, args)                                       // default log
	fakeProc(t, proc, "11", bin+" (deleted)", []string{sock + "2", nodelog.DirEnv + "=/tmp/other"}, args) // another log
	fakeProc(t, proc, "12", bin, []string{"PATH=/bin"}, append(args, "start"))                            // not a server
	fakeProc(t, proc, "13", "/usr/bin/containerd-shim-runc-v2", []string{sock}, args)                     // stock shim
	fakeProc(t, proc, "14", bin+" (deleted)", []string{sock + "4"}, []string{bin, "--namespace=default", "--id=c9"})
	if err := os.Mkdir(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := findShims(proc, nodelog.DefaultDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []shimProc{
		{pid: 10, id: "sb1", namespace: "k8s.io", address: "unix:///run/containerd/s/abc"},
		{pid: 14, id: "c9", namespace: "default", address: "unix:///run/containerd/s/abc4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("found %+v, want %+v", got, want)
	}
	if got, _ := findShims(proc, "/tmp/other/"); len(got) != 1 || got[0].pid != 11 {
		t.Fatalf("shims of /tmp/other: %+v, want pid 11", got)
	}
}

// A shim's histogram is exposed with cumulative buckets in seconds.
func TestShimHistogram(t *testing.T) {
	var c task.Counters
	c.EventsQueued, c.EventsSent, c.OldestUnsent = 5, 3, 1500*time.Millisecond
	c.ExitPublished.Buckets[0], c.ExitPublished.Buckets[2], c.ExitPublished.Buckets[len(exitmon.ExitLatencyBounds)] = 2, 1, 1
	c.ExitPublished.Count, c.ExitPublished.Sum = 4, 2*time.Minute
	labels := []string{"default", "web", "uid-web", "sb1", "10"}
	col := collectorFunc(func(ch chan<- prometheus.Metric) { collectShim(ch, c, labels) })
	want := `# HELP watch_shim_exit_publish_latency_seconds Time from a process's exit to containerd's acknowledgement of its TaskExit.
# TYPE watch_shim_exit_publish_latency_seconds histogram
` + histLines(`namespace="default",pid="10",pod="web",sandbox_id="sb1",uid="uid-web"`, []uint64{2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}, 4, 120) + `# HELP watch_shim_events_unsent Events queued and not yet acknowledged by containerd.
# TYPE watch_shim_events_unsent gauge
watch_shim_events_unsent{namespace="default",pid="10",pod="web",sandbox_id="sb1",uid="uid-web"} 2
# HELP watch_shim_oldest_unsent_event_age_seconds Age of the oldest event not yet acknowledged by containerd (0 when none).
# TYPE watch_shim_oldest_unsent_event_age_seconds gauge
watch_shim_oldest_unsent_event_age_seconds{namespace="default",pid="10",pod="web",sandbox_id="sb1",uid="uid-web"} 1.5
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "watch_shim_exit_publish_latency_seconds", "watch_shim_events_unsent", "watch_shim_oldest_unsent_event_age_seconds"); err != nil {
		t.Error(err)
	}
}

// histLines writes a histogram's exposition lines.
func histLines(labels string, cum []uint64, count uint64, sum float64) string {
	var b strings.Builder
	for i, bound := range exitmon.ExitLatencyBounds {
		b.WriteString("watch_shim_exit_publish_latency_seconds_bucket{" + labels + `,le="` + formatFloat(bound.Seconds()) + `"} ` + formatFloat(float64(cum[i])) + "\n")
	}
	b.WriteString("watch_shim_exit_publish_latency_seconds_bucket{" + labels + `,le="+Inf"} ` + formatFloat(float64(count)) + "\n")
	b.WriteString("watch_shim_exit_publish_latency_seconds_sum{" + labels + "} " + formatFloat(sum) + "\n")
	b.WriteString("watch_shim_exit_publish_latency_seconds_count{" + labels + "} " + formatFloat(float64(count)) + "\n")
	return b.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// collectorFunc is a Collector of what a function sends (unchecked: no
// descriptors).
type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
