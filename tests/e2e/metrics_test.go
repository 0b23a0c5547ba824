//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestNodeMetricsExecStorm (issue 18, must-show 5): the node component
// (`containerd-shim-watch-installer metrics`) is scraped over HTTP while a
// pod's container runs an exec storm with known exit codes; every scrape
// succeeds and the exit counts only grow; at the end the exits by kind,
// reason and code are exactly what the test caused, the container's last
// termination is its exit, and the shim has no unsent event.
func TestNodeMetricsExecStorm(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	logDir := filepath.Join(t.TempDir(), "nodelog")
	t.Setenv(nodelog.DirEnv, logDir) // containerd passes it to the shims
	vs := harness.Versions()
	c := harness.Start(t, harness.Options{Version: vs[len(vs)-1]})
	url := startMetricsComponent(t, logDir)

	const execs, parallel, codes, stopCode = 200, 8, 5, 7
	pod := harness.Pod{Name: "metrics-storm"}
	podID, err := c.RunPod(pod, "watch")
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateContainer(podID, pod, harness.Container{Name: "app",
		Command: harness.Sh(fmt.Sprintf("trap 'exit %d' TERM; while :; do sleep 0.1; done", stopCode))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Crictl("start", id); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	scrapes := make(chan int, 1)
	go func() { scrapes <- scrapeDuring(ctx, t, url) }()
	start := time.Now()
	wrong := execStorm(t, c, id, execs, parallel, codes)
	t.Logf("%d execs in %s, %d wrong exit codes", execs, time.Since(start).Round(time.Millisecond), wrong)
	if _, err := c.Crictl("stop", "--timeout", "10", id); err != nil {
		t.Fatal(err)
	}
	cancel()
	t.Logf("%d scrapes during the storm", <-scrapes)

	want := map[string]float64{}
	for code := range codes {
		reason := "Error"
		if code == 0 {
			reason = "Completed"
		}
		want[exitSeries("exec", reason, code)] = execs / codes
	}
	want[exitSeries("container", "Error", stopCode)] = 1
	var last map[string]*dto.MetricFamily
	ok := eventually(20*time.Second, func() bool {
		last = scrape(t, url)
		return exitsMatch(last, want) == "" && unsent(last) == 0
	})
	if !ok {
		t.Errorf("exits: %s", exitsMatch(last, want))
		t.Errorf("unsent events at the end: %v", unsent(last))
	}
	checkFinal(t, last, execs+1, stopCode)
}

// startMetricsComponent builds the installer and runs its metrics command
// on a free port for logDir; it returns the metrics URL.
func startMetricsComponent(t *testing.T, logDir string) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "containerd-shim-watch-installer")
	build := exec.Command("go", "build", "-o", bin, "./cmd/containerd-shim-watch-installer")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build installer: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "metrics", "--metrics-address", "127.0.0.1:0", "--log-dir", logDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("metrics component's stderr:\n%s", stderr.String())
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "serving node metrics at "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("metrics component did not start: %s", stderr.String())
	return ""
}

// execStorm runs execs execs in container id, parallel at a time, exec n
// exiting with n%codes; it returns how many reported another code.
func execStorm(t *testing.T, c *harness.Containerd, id string, execs, parallel, codes int) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	wrong := 0
	work := make(chan int)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				code := n % codes
				_, err := c.Crictl("exec", id, "sh", "-c", fmt.Sprintf("exit %d", code))
				if got := crictlExecCode(err); got != code {
					mu.Lock()
					wrong++
					t.Errorf("exec %d: exit %d, want %d (%v)", n, got, code, err)
					mu.Unlock()
				}
			}
		}()
	}
	for n := range execs {
		work <- n
	}
	close(work)
	wg.Wait()
	return wrong
}

// crictlExecCode is the exit code of a `crictl exec` command: crictl
// itself exits 1 and says the command's code.
func crictlExecCode(err error) int {
	if err == nil {
		return 0
	}
	_, after, ok := strings.Cut(err.Error(), "command terminated with exit code ")
	if !ok {
		return -1
	}
	code, err := strconv.Atoi(strings.Fields(after)[0])
	if err != nil {
		return -1
	}
	return code
}

// scrapeDuring scrapes every 250 ms until ctx ends: each scrape must
// succeed and no exit count may go down. It returns the scrapes made.
func scrapeDuring(ctx context.Context, t *testing.T, url string) int {
	prev := map[string]float64{}
	n := 0
	for ctx.Err() == nil {
		for k, v := range exitCounts(scrape(t, url)) {
			if v < prev[k] {
				t.Errorf("%s went down: %v after %v", k, v, prev[k])
			}
			prev[k] = v
		}
		n++
		time.Sleep(250 * time.Millisecond)
	}
	return n
}

// scrape GETs url and parses the exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("scrape: %v", err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("scrape: %s: %s", resp.Status, b)
		return nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Errorf("scrape: parse: %v", err)
	}
	return mf
}

// exitSeries names a series of watch_exits_total of the test's container.
func exitSeries(kind, reason string, code int) string {
	return fmt.Sprintf("%s/%s/%d", kind, reason, code)
}

// exitCounts returns the test pod's watch_exits_total by exitSeries.
func exitCounts(mf map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range series(mf, "watch_exits_total") {
		l := labels(m)
		if l["pod"] != "metrics-storm" || l["namespace"] != "default" || l["uid"] != "metrics-storm-uid" || l["container"] != "app" {
			continue
		}
		out[l["kind"]+"/"+l["reason"]+"/"+l["exit_code"]] = m.GetCounter().GetValue()
	}
	return out
}

// exitsMatch describes how the exit counts differ from want ("" if not).
func exitsMatch(mf map[string]*dto.MetricFamily, want map[string]float64) string {
	got := exitCounts(mf)
	if fmt.Sprint(got) == fmt.Sprint(want) {
		return ""
	}
	return fmt.Sprintf("got %v, want %v", got, want)
}

// unsent sums watch_shim_events_unsent (-1 when no shim answered).
func unsent(mf map[string]*dto.MetricFamily) float64 {
	ms := series(mf, "watch_shim_events_unsent")
	if len(ms) == 0 {
		return -1
	}
	sum := 0.0
	for _, m := range ms {
		sum += m.GetGauge().GetValue()
	}
	return sum
}

// checkFinal checks the rest of the final scrape: the log read, the
// container's last termination, the shim's counters and histogram.
func checkFinal(t *testing.T, mf map[string]*dto.MetricFamily, exits, stopCode int) {
	t.Helper()
	if v := value(mf, "watch_nodelog_up"); v != 1 {
		t.Errorf("watch_nodelog_up %v, want 1", v)
	}
	if v := value(mf, "watch_container_last_terminated_exit_code"); v != float64(stopCode) {
		t.Errorf("last terminated exit code %v, want %d", v, stopCode)
	}
	shims := series(mf, "watch_shim_exit_publish_latency_seconds")
	if len(shims) != 1 {
		t.Fatalf("%d shims in the metrics, want the pod's 1", len(shims))
	}
	l := labels(shims[0])
	if l["pod"] != "metrics-storm" || l["uid"] != "metrics-storm-uid" || l["sandbox_id"] == "" {
		t.Errorf("shim labels %v, want the pod's", l)
	}
	// The sandbox's exit is not in yet: the pod still runs.
	if h := shims[0].GetHistogram(); h.GetSampleCount() != uint64(exits) {
		t.Errorf("exit latency histogram counts %d exits, want %d", h.GetSampleCount(), exits)
	}
	q, s := value(mf, "watch_shim_events_queued_total"), value(mf, "watch_shim_events_sent_total")
	if q == 0 || q != s || value(mf, "watch_shim_oldest_unsent_event_age_seconds") != 0 {
		t.Errorf("shim events: %v queued, %v sent, oldest unsent %vs", q, s, value(mf, "watch_shim_oldest_unsent_event_age_seconds"))
	}
	t.Logf("shim: %v events, exit → published p-count %d, sum %.3fs; node log %v bytes",
		q, shims[0].GetHistogram().GetSampleCount(), shims[0].GetHistogram().GetSampleSum(), value(mf, "watch_nodelog_bytes"))
}

func series(mf map[string]*dto.MetricFamily, name string) []*dto.Metric {
	if f, ok := mf[name]; ok {
		return f.GetMetric()
	}
	return nil
}

// value returns the single sample of a gauge or counter (NaN-free: -1 when
// absent or several).
func value(mf map[string]*dto.MetricFamily, name string) float64 {
	ms := series(mf, name)
	if len(ms) != 1 {
		return -1
	}
	if g := ms[0].GetGauge(); g != nil {
		return g.GetValue()
	}
	return ms[0].GetCounter().GetValue()
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
