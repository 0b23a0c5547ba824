//go:build bench

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

const k8sPods = 20 // pods of every Kubernetes figure, per runtime

// k8sRuntimes maps each compared runtime to its RuntimeClass ("" for the
// node's default handler, runc with the stock shim).
var k8sRuntimes = map[string]string{"runc": "", "watch": "watch"}

// TestBenchKubernetes compares RuntimeClass watch with the default runc on
// a private single-node cluster (`make bench-k8s`), in one run:
//
//   - scale 0 → 20: a Deployment of 20 pods of one sleeping container
//     scaled from 0, time until all 20 are Ready; BENCH_K8S_REPS
//     repetitions (default 3), alternating which runtime goes first;
//     the median is reported;
//   - shim PSS: the sum of /proc/PID/smaps_rollup Pss over the runtime's
//     shims with the 20 pods Ready (5 s settle), median over repetitions;
//   - CPU per exec probe: a Deployment of 20 pods with an exec liveness
//     probe (`true`, every second), shim utime+stime over
//     BENCH_K8S_PROBE_SECONDS (default 30) less the shims' CPU at rest
//     (20 pods without probes, 15 s, measured just before), divided by
//     the probes the kubelet ran in the window (its prober_probe_total).
func TestBenchKubernetes(t *testing.T) {
	reps := envInt("BENCH_K8S_REPS", 3)
	window := time.Duration(envInt("BENCH_K8S_PROBE_SECONDS", 30)) * time.Second
	version := os.Getenv("BENCH_CONTAINERD")
	if version == "" {
		version = "2.4"
	}
	if !harness.HasWatchShim() {
		t.Fatal(".bin/" + harness.WatchShim + " missing: run make build")
	}
	load := loadavg()
	k := harness.StartCluster(t, harness.ClusterOptions{Containerd: harness.Options{Version: version, LogLevel: "info"}})
	if err := k.Apply(harness.RuntimeClassWatch); err != nil {
		t.Fatal(err)
	}
	raw := map[string]map[string][]float64{"runc": {}, "watch": {}}
	for rt, class := range k8sRuntimes {
		for _, d := range []string{harness.SleeperDeployment("scale-"+rt, class, 0, false), harness.SleeperDeployment("probe-"+rt, class, 0, true)} {
			if err := k.Apply(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	for rep := 0; rep < reps; rep++ {
		for _, rt := range repOrder(rep) {
			kb := &k8sBencher{t: t, k: k, rt: rt}
			ready, pss := kb.scaleUp("scale-" + rt)
			raw[rt]["ready_s"] = append(raw[rt]["ready_s"], ready)
			raw[rt]["pss_mib"] = append(raw[rt]["pss_mib"], pss)
			t.Logf("rep %d %s: %d pods Ready in %.1f s, shims' PSS %.1f MiB", rep, rt, k8sPods, ready, pss)
			if rep == reps-1 {
				raw[rt]["rest_ms_per_s"] = []float64{kb.restRate()}
			}
			kb.scaleDown("scale-" + rt)
		}
	}
	for _, rt := range repOrder(reps) {
		kb := &k8sBencher{t: t, k: k, rt: rt}
		cpu, probes := kb.probeCPU(window, raw[rt]["rest_ms_per_s"][0])
		raw[rt]["probe_cpu_ms"] = []float64{cpu}
		raw[rt]["probes"] = []float64{probes}
		t.Logf("%s: %.0f probes in %s, %.3f ms shim CPU per probe", rt, probes, window, cpu)
	}
	table := k8sTable(raw, reps, window)
	t.Logf("containerd %s, %d repetitions, load before %s, after %s\n%s", version, reps, load, loadavg(), table)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// repOrder is the order of the runtimes in repetition rep.
func repOrder(rep int) []string {
	if rep%2 == 1 {
		return []string{"watch", "runc"}
	}
	return []string{"runc", "watch"}
}

// k8sBencher measures one runtime on the cluster.
type k8sBencher struct {
	t  *testing.T
	k  *harness.Cluster
	rt string
}

// scaleUp scales app from 0 to k8sPods and returns the seconds until all
// are Ready and, 5 s later, the runtime's shims' total PSS in MiB.
func (b *k8sBencher) scaleUp(app string) (readyS, pssMiB float64) {
	start := time.Now()
	if err := b.k.Scale(app, k8sPods); err != nil {
		b.t.Fatal(err)
	}
	if err := b.k.WaitReadyPods(app, k8sPods, 10*time.Minute); err != nil {
		b.t.Fatal(err)
	}
	readyS = time.Since(start).Seconds()
	time.Sleep(5 * time.Second)
	pids := b.k.C.ShimPids(b.rt)
	if len(pids) != k8sPods {
		b.t.Fatalf("%s: %d shims for %d pods", b.rt, len(pids), k8sPods)
	}
	for _, pid := range pids {
		_, p := smapsRollup(b.t, pid)
		pssMiB += p / 1024
	}
	return readyS, pssMiB
}

// restRate is the CPU the runtime's shims spend at rest, in ms per
// second for all of them, over restCPUWindow.
func (b *k8sBencher) restRate() float64 {
	pids := b.k.C.ShimPids(b.rt)
	cpu0 := shimCPU(pids)
	time.Sleep(restCPUWindow)
	return (shimCPU(pids) - cpu0) / restCPUWindow.Seconds()
}

// scaleDown scales app to 0 and waits until its pods and the runtime's
// shims are gone.
func (b *k8sBencher) scaleDown(app string) {
	if err := b.k.Scale(app, 0); err != nil {
		b.t.Fatal(err)
	}
	if err := b.k.WaitReadyPods(app, 0, 5*time.Minute); err != nil {
		b.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(b.k.C.ShimPids(b.rt)) > 0 {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: shims %v still running 2 min after the pods were gone", b.rt, b.k.C.ShimPids(b.rt))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// probeCPU runs the probed Deployment at k8sPods for window and returns
// the shims' CPU per probe in ms, less restRate (ms/s), and the probes.
func (b *k8sBencher) probeCPU(window time.Duration, restRate float64) (cpuMs, probes float64) {
	app := "probe-" + b.rt
	b.scaleUp(app)
	pids := b.k.C.ShimPids(b.rt)
	c0 := b.probeCount(app)
	cpu0, t0 := shimCPU(pids), time.Now()
	time.Sleep(window)
	cpu := shimCPU(pids) - cpu0 - restRate*time.Since(t0).Seconds()
	probes = b.probeCount(app) - c0
	b.scaleDown(app)
	if probes == 0 {
		b.t.Fatalf("%s: no probe ran in %s", b.rt, window)
	}
	return cpu / probes, probes
}

// probeCount is the number of liveness probes the kubelet ran in app's
// pods so far; a failed one fails the test.
func (b *k8sBencher) probeCount(app string) float64 {
	c, err := b.k.ProbeCounts(app + "-")
	if err != nil {
		b.t.Fatal(err)
	}
	for res, n := range c {
		if res != "Liveness/successful" && n > 0 {
			b.t.Errorf("%s: %.0f probes %s", app, n, res)
		}
	}
	return c["Liveness/successful"]
}

// k8sTable renders the figures as a markdown table with ratios watch/runc.
func k8sTable(raw map[string]map[string][]float64, reps int, window time.Duration) string {
	rows := []struct{ key, name, format string }{
		{"ready_s", fmt.Sprintf("Scale 0 → %d pods, all Ready (s, median of %d)", k8sPods, reps), "%.1f"},
		{"pss_mib", fmt.Sprintf("Shims' total PSS at %d pods (MiB, median of %d)", k8sPods, reps), "%.1f"},
		{"probe_cpu_ms", fmt.Sprintf("Shim CPU per exec probe (ms, %s of probes)", window), "%.2f"},
		{"rest_ms_per_s", fmt.Sprintf("Shims' CPU at rest, %d pods (ms/s)", k8sPods), "%.2f"},
		{"probes", fmt.Sprintf("Probes in the window (%d pods × 1/s)", k8sPods), "%.0f"},
	}
	var sb strings.Builder
	sb.WriteString("| Figure | runc (stock) | watch | ratio watch/runc |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		s, w := median(raw["runc"][r.key]), median(raw["watch"][r.key])
		ratio := "n/a"
		if s != 0 {
			ratio = fmt.Sprintf("%.2f", w/s)
		}
		fmt.Fprintf(&sb, "| %s | "+r.format+" | "+r.format+" | %s |\n", r.name, s, w, ratio)
	}
	return sb.String()
}
