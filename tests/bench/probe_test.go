//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

var (
	probeWindow = 60 * time.Second // figure 7: how long the probes run
	serialExecs = 200              // figure 8: execs one after another
)

// probeCmd is what the probes run: the cheapest command there is, so that
// the figures show the runtime's cost, not the command's.
var probeCmd = []string{"true"}

// execFigures measures what the kubelet's exec probes cost: ExecSync on
// containerd's CRI socket, the call the kubelet makes for every probe.
// ctrs are running containers, one per pod, whose shims have been at rest.
// Shim CPU is measured over all the runtime's shims, less what they cost at
// rest (restRate, ms of CPU per second for all of them, measured just
// before), and divided by the execs.
func (b *bencher) execFigures(ctrs []string, restRate float64) {
	shims := b.c.ShimPids(b.rt)

	// Figure 7: every container probed once a second, the probes of the
	// containers spread over the second as the kubelet's are.
	stop := b.startPerf(shims, "probes")
	cpu0, cs0, t0 := shimCPU(shims), contextSwitches(shims), time.Now()
	lat := b.probes(ctrs, probeWindow)
	cpu := shimCPU(shims) - cpu0 - restRate*time.Since(t0).Seconds()
	stop()
	b.m["probe_cpu_ms_per_exec"] = cpu / float64(len(lat))
	b.m["probe_csw_per_exec"] = float64(contextSwitches(shims)-cs0) / float64(len(lat))
	b.m["probe_p50_ms"] = percentile(lat, 50)
	b.m["probe_p99_ms"] = percentile(lat, 99)

	// Figure 8: serialExecs execs one after another in one container.
	stop = b.startPerf(shims, "serial")
	cpu0, cs0, t0 = shimCPU(shims), contextSwitches(shims), time.Now()
	lat = make([]float64, 0, serialExecs)
	for i := 0; i < serialExecs; i++ {
		lat = append(lat, b.execSync(ctrs[0]))
	}
	cpu = shimCPU(shims) - cpu0 - restRate*time.Since(t0).Seconds()
	stop()
	b.m["serial_cpu_ms_per_exec"] = cpu / float64(serialExecs)
	b.m["serial_csw_per_exec"] = float64(contextSwitches(shims)-cs0) / float64(serialExecs)
	b.m["serial_exec_p50_ms"] = percentile(lat, 50)
}

// probes runs one ExecSync per second in each of ctrs for window and
// returns every probe's latency in ms.
func (b *bencher) probes(ctrs []string, window time.Duration) []float64 {
	var mu sync.Mutex
	var lat []float64
	var wg sync.WaitGroup
	start := time.Now()
	for i, id := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := time.Duration(i) * time.Second / time.Duration(len(ctrs))
			for next := start.Add(offset); next.Before(start.Add(window)); next = next.Add(time.Second) {
				time.Sleep(time.Until(next))
				d := b.execSync(id)
				if os.Getenv("BENCH_PROBE_TRACE") != "" {
					b.t.Logf("probe %s at %.1fs: %.0f ms", id[:8], time.Since(start).Seconds(), d)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat
}

// execSync runs probeCmd in container id through CRI and returns how long
// the call took in ms; anything but exit code 0 fails the test.
func (b *bencher) execSync(id string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := b.criClient().ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: probeCmd, Timeout: 10})
	d := ms(time.Since(start))
	if err != nil {
		b.t.Errorf("%s: ExecSync in %s: %v", b.rt, id, err)
		return d
	}
	if resp.ExitCode != 0 {
		b.t.Errorf("%s: ExecSync in %s: exit code %d, stderr %q", b.rt, id, resp.ExitCode, resp.Stderr)
	}
	return d
}

// TestProbeLab is a quick loop for work on the exec path: figures 7 and 8
// only, on pods (default 10) with one container each, BENCH_REPS times
// (default 3) for both runtimes, alternating the order. BENCH_PROBE_SECONDS
// sets the probe window (default 60), BENCH_AB=BINARY and BENCH_ONLY work as
// in TestExitLab, and so do BENCH_PERF=DIR and BENCH_PERF_SYSCALLS=1: they
// record (or count the system calls of) the shims during the probes and
// during the serial execs (perf-<name>-<rep>-probes, -serial; name is
// watchB for BENCH_AB's build).
//
//	cd tests/bench && go test -tags 'bench e2e' -count=1 -v -run '^TestProbeLab$' .
func TestProbeLab(t *testing.T) {
	c, names, ab, reps := startLab(t, 3)
	sums := map[string][]string{}
	for rep := 0; rep < reps; rep++ {
		order := []string{names[0], names[1]}
		if rep%2 == 1 {
			order = []string{names[1], names[0]}
		}
		for _, name := range order {
			rt := runtimeFor(ab, name)
			if rt == "" {
				continue
			}
			b := &bencher{t: t, c: c, rt: rt, rep: rep, m: map[string]float64{}, perf: os.Getenv("BENCH_PERF"), name: name}
			s := b.startSleepers(fmt.Sprintf("probe%d-%s", rep, name))
			b.restFigures("1c")
			b.execFigures(s.ctrIDs, b.restRate("1c"))
			line := fmt.Sprintf("probes: cpu/exec %.2f ms, csw/exec %.0f, p50 %.0f ms, p99 %.0f ms; serial: cpu/exec %.2f ms, csw/exec %.0f, p50 %.0f ms; rest %.1f ms/min/pod; load %s",
				b.m["probe_cpu_ms_per_exec"], b.m["probe_csw_per_exec"], b.m["probe_p50_ms"], b.m["probe_p99_ms"],
				b.m["serial_cpu_ms_per_exec"], b.m["serial_csw_per_exec"], b.m["serial_exec_p50_ms"], b.m["rest_cpu_ms_per_min_1c"], loadavg())
			t.Logf("rep %d %s: %s", rep, name, line)
			sums[name] = append(sums[name], line)
			b.removePods(s.podIDs)
		}
	}
	for _, name := range names {
		for _, s := range sums[name] {
			t.Logf("%s: %s", name, s)
		}
	}
}

// sleepers are pods of one sleeping container each.
type sleepers struct {
	pods           []harness.Pod
	podIDs, ctrIDs []string
	startMs        []float64 // how long each pod took to start
	// the same, per CRI call: RunPodSandbox, CreateContainer, StartContainer
	sandboxMs, createMs, startCtrMs []float64
}

// startSleepers starts pods (the package's count) of one sleeping
// container each, named prefix-N.
func (b *bencher) startSleepers(prefix string) sleepers {
	var s sleepers
	for i := 0; i < pods; i++ {
		p := harness.Pod{Name: fmt.Sprintf("%s-%d", prefix, i)}
		if err := os.MkdirAll(filepath.Join(b.c.Dir, "pods", p.Name), 0o755); err != nil {
			b.t.Fatal(err)
		}
		ps := b.startPod(b.c.PodConfig(p), b.c.ContainerConfig(sleeper("c0")))
		s.pods = append(s.pods, p)
		s.podIDs = append(s.podIDs, ps.podID)
		s.ctrIDs = append(s.ctrIDs, ps.ctrID)
		s.startMs = append(s.startMs, ps.total())
		s.sandboxMs = append(s.sandboxMs, ps.sandbox)
		s.createMs = append(s.createMs, ps.create)
		s.startCtrMs = append(s.startCtrMs, ps.startCtr)
	}
	return s
}

// contextSwitches returns the context switches, voluntary and not, of
// every thread of pids so far. Less noisy than CPU time on a busy machine,
// and what a Go program's wake-ups (its sysmon thread's among them) cost.
func contextSwitches(pids []int) int {
	n := 0
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		for _, task := range tasks {
			data, err := os.ReadFile(task)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				k, v, _ := strings.Cut(line, ":")
				if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
					c, _ := strconv.Atoi(strings.TrimSpace(v))
					n += c
				}
			}
		}
	}
	return n
}

// restRate is the CPU all of the runtime's shims spent at rest, in ms per
// second, from restFigures' per-pod figure with this suffix.
func (b *bencher) restRate(suffix string) float64 {
	return b.m["rest_cpu_ms_per_min_"+suffix] * float64(pods) / 60
}
