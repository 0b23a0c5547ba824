//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestExitLab is a quick loop for work on the exit path: only figures 4 and
// 5 (stormExecs execs in one container exiting together), BENCH_REPS times
// (default 3) for both runtimes on one containerd, alternating the order.
// It prints release → last Wait, release → last exit reaped (exited_at),
// and the shim CPU of that window per 1000 exits, from /proc/PID/stat (10 ms
// ticks) and from the threads' schedstat (ns).
//
//	cd tests/bench && go test -tags 'bench e2e' -count=1 -v -run '^TestExitLab$' .
//
// BENCH_PERF=DIR also records the shims with `perf record -g` during that
// window (DIR/perf-<rt>-<rep>-<burst>.data; perf's cost skews the figures), and
// BENCH_PERF_SYSTEM=1 the whole machine instead, without stacks, and
// BENCH_PERF_SYSCALLS=1 counts the shims' system calls instead (`perf
// trace -s`, DIR/perf-<rt>-<rep>-<burst>-syscalls.txt).
// BENCH_BURST=1 runs figures 3 to 5 instead (the 200-exec burst over 4
// containers with its exit event latencies, then the 500-exec one).
// BENCH_ONLY=watch (or runc) measures one runtime only. BENCH_AB=BINARY
// compares two watch builds instead of watch and runc (see abSwap): on a
// busy machine the only way to see a 10-20% change.
func TestExitLab(t *testing.T) {
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
			b := &bencher{t: t, c: c, rt: rt, rep: rep, perf: os.Getenv("BENCH_PERF"), name: name}
			if os.Getenv("BENCH_BURST") != "" {
				// Figures 3 to 5, as in TestBench: the 200-exec burst with
				// its event latencies, then the 500-exec one.
				b.m = map[string]float64{}
				b.burstFigures()
				line := fmt.Sprintf("200: event p50 %.1f p99 %.1f ms, shim sent p99 %.1f ms, wall %.0f ms; 500: wall %.0f ms, cpu/1000 exits %.0f ms (sys %.0f), ctx switches/exit %.1f; load %s",
					b.m["exit_event_p50_ms"], b.m["exit_event_p99_ms"], b.m["exit_send_p99_ms"], b.m["burst200_wait_wall_ms"],
					b.m["exec500_exit_wall_ms"], b.m["cpu_ms_per_1000_exits"], b.m["sys_ms_per_1000_exits"], b.m["ctx_switches_per_exit"], loadavg())
				t.Logf("rep %d %s: %s", rep, name, line)
				sums[name] = append(sums[name], line)
				continue
			}
			r := b.stormOnly()
			line := fmt.Sprintf("wall %.0f ms (last reap %.0f ms, all but the shim %.0f ms), cpu/1000 exits %.0f ms (schedstat %.0f ms, sys %.0f ms), ctx switches/exit %.1f, cpu/1000 execs %.0f ms, load %s",
				r.exitWall, r.reapWall, r.otherCPU, r.cpuExit*1000/float64(stormExecs), r.schedExit*1000/float64(stormExecs),
				r.sysExit*1000/float64(stormExecs), float64(r.ctxExit)/float64(stormExecs), r.cpuAll*1000/float64(stormExecs), loadavg())
			t.Logf("rep %d %s: %s", rep, name, line)
			sums[name] = append(sums[name], line)
		}
	}
	for _, name := range names {
		t.Logf("%s:\n  %s", name, strings.Join(sums[name], "\n  "))
	}
}

// abSwap alternates two builds of the watch shim (BENCH_AB=other binary:
// "watchB" runs it, "watch" the one of make build) by renaming one or the
// other into .bin between pods, to compare two changes in the same run.
type abSwap struct {
	t         *testing.T
	bin, a, b string
}

func newABSwap(t *testing.T) *abSwap {
	other := os.Getenv("BENCH_AB")
	if other == "" {
		return nil
	}
	dir, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	s := &abSwap{t: t, bin: filepath.Join(dir, harness.WatchShim),
		a: filepath.Join(t.TempDir(), "a"), b: filepath.Join(t.TempDir(), "b")}
	for _, cp := range [][2]string{{s.bin, s.a}, {other, s.b}} {
		if out, err := exec.Command("cp", cp[0], cp[1]).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
	}
	t.Cleanup(func() { s.use(false) })
	return s
}

// use puts build b (or a) in place for the next pod.
func (s *abSwap) use(b bool) {
	src := s.a
	if b {
		src = s.b
	}
	tmp := s.bin + ".ab"
	if out, err := exec.Command("cp", src, tmp).CombinedOutput(); err != nil {
		s.t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.Rename(tmp, s.bin); err != nil {
		s.t.Fatal(err)
	}
}

// stormOnly runs one pod with one container and the stormExecs burst.
func (b *bencher) stormOnly() burstResult {
	bp := b.fifoPod(fmt.Sprintf("lab%d-%s", b.rep, b.rt), fmt.Sprintf("trig-%s-%d", b.rt, b.rep), "s0")
	r := b.burst(bp.tc, bp.fifo, bp.ctrs, stormExecs, "s", nil)
	b.removePods([]string{bp.podID})
	return r
}

// startPerf starts `perf record` on the shims when b.perf is set and
// returns the function that stops it. prefix names the burst (x: the
// 200-exec one, s: the 500-exec one).
func (b *bencher) startPerf(shims []int, prefix string) func() {
	if b.perf == "" {
		return func() {}
	}
	var ps []string
	for _, p := range shims {
		ps = append(ps, strconv.Itoa(p))
	}
	name := b.name
	if name == "" {
		name = b.rt
	}
	out := filepath.Join(b.perf, fmt.Sprintf("perf-%s-%d-%s.data", name, b.rep, prefix))
	args := []string{"record", "-F", "4999", "-g", "-o", out, "-p", strings.Join(ps, ",")}
	if os.Getenv("BENCH_PERF_SYSTEM") != "" { // the whole machine, to see who else runs
		args = []string{"record", "-F", "4999", "-a", "-o", out}
	}
	if os.Getenv("BENCH_PERF_SYSCALLS") != "" { // count the shims' system calls
		out = strings.TrimSuffix(out, ".data") + "-syscalls.txt"
		args = []string{"trace", "-s", "-o", out, "-p", strings.Join(ps, ",")}
	}
	cmd := exec.Command("perf", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("perf: %v", err)
	}
	time.Sleep(time.Second) // let perf attach
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}
}

// schedCPU returns the CPU time of every live thread of pids in ms, from
// /proc/PID/task/TID/schedstat (ns resolution, unlike stat's 10 ms ticks).
func schedCPU(pids []int) float64 {
	var ns float64
	for _, pid := range pids {
		tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, tid := range tids {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, tid.Name()))
			if err != nil {
				continue
			}
			f := strings.Fields(string(data))
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				ns += v
			}
		}
	}
	return ns / 1e6
}

// TestPodLab is a quick loop for work on pod start: only figure 2, pods
// (BENCH_PODS, default 10) per runtime and repetition, the runtimes taking
// turns pod by pod, BENCH_REPS (default 3) repetitions. BENCH_AB=BINARY
// compares two watch builds as in TestExitLab.
//
//	cd tests/bench && go test -tags 'bench e2e' -count=1 -v -run '^TestPodLab$' .
func TestPodLab(t *testing.T) {
	n := 10
	if v, err := strconv.Atoi(os.Getenv("BENCH_PODS")); err == nil && v > 0 {
		n = v
	}
	c, names, ab, reps := startLab(t, 3)
	lat := map[string][]float64{}
	phases := map[string][3][]float64{} // RunPodSandbox, CreateContainer, StartContainer
	for rep := 0; rep < reps; rep++ {
		ids := map[string][]string{}
		for i := 0; i < n; i++ {
			order := []string{names[0], names[1]}
			if (rep+i)%2 == 1 {
				order = []string{names[1], names[0]}
			}
			for _, name := range order {
				rt := name
				if ab != nil {
					ab.use(name == "watchB")
					rt = "watch"
				}
				b := &bencher{t: t, c: c, rt: rt, rep: rep}
				p := harness.Pod{Name: fmt.Sprintf("lab%d-%s-%d", rep, name, i)}
				if err := os.MkdirAll(filepath.Join(c.Dir, "pods", p.Name), 0o755); err != nil {
					t.Fatal(err)
				}
				ps := b.startPod(c.PodConfig(p), c.ContainerConfig(sleeper("c0")))
				ids[rt] = append(ids[rt], ps.podID)
				lat[name] = append(lat[name], ps.total())
				ph := phases[name]
				for j, v := range []float64{ps.sandbox, ps.create, ps.startCtr} {
					ph[j] = append(ph[j], v)
				}
				phases[name] = ph
			}
		}
		for rt, l := range ids {
			(&bencher{t: t, c: c, rt: rt}).removePods(l)
		}
	}
	for _, name := range names {
		ph := phases[name]
		t.Logf("%s: pod start median %.0f ms over %d pods (RunPodSandbox %.0f, CreateContainer %.0f, StartContainer %.0f ms)",
			name, median(lat[name]), len(lat[name]), median(ph[0]), median(ph[1]), median(ph[2]))
	}
	t.Logf("ratio %s/%s: %.2f", names[1], names[0], median(lat[names[1]])/median(lat[names[0]]))
}

// TestMemLab is a quick loop for work on memory at rest: figure 1 and 6 with
// 1 container per pod only, per runtime (BENCH_ONLY=watch for one),
// BENCH_REPS (default 1) repetitions, BENCH_AB=BINARY as in TestExitLab.
// BENCH_5C=1 adds the 5-container figures.
// BENCH_LATE=1 measures PSS again 30 and 60 s after the last pod started.
// BENCH_HOLD=DURATION keeps the pods running that long after measuring, to
// look at the shims by hand (their pids are logged).
//
//	cd tests/bench && go test -tags 'bench e2e' -count=1 -v -run '^TestMemLab$' .
func TestMemLab(t *testing.T) {
	hold, _ := time.ParseDuration(os.Getenv("BENCH_HOLD"))
	c, names, ab, reps := startLab(t, 1)
	for rep := 0; rep < reps; rep++ {
		for _, name := range names {
			rt := runtimeFor(ab, name)
			if rt == "" {
				continue
			}
			b := &bencher{t: t, c: c, rt: rt, rep: rep, m: map[string]float64{}}
			var ids []string
			var podList []harness.Pod
			for i := 0; i < pods; i++ {
				p := harness.Pod{Name: fmt.Sprintf("mem%d-%s-%d", rep, name, i)}
				if err := os.MkdirAll(filepath.Join(c.Dir, "pods", p.Name), 0o755); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, b.startPod(c.PodConfig(p), c.ContainerConfig(sleeper("c0"))).podID)
				podList = append(podList, p)
			}
			started := time.Now()
			b.restFigures("1c")
			if five, _ := strconv.ParseBool(os.Getenv("BENCH_5C")); five {
				b.addContainers(ids, podList)
				b.restFigures("5c")
			}
			t.Logf("rep %d %s: %s", rep, name, fmtMetrics(b.m))
			// PSS later on: how much of the first figure is settling.
			for _, at := range []time.Duration{30 * time.Second, 60 * time.Second} {
				if late, _ := strconv.ParseBool(os.Getenv("BENCH_LATE")); !late {
					break
				}
				time.Sleep(time.Until(started.Add(at)))
				var pss float64
				for _, pid := range c.ShimPids(rt) {
					_, p := smapsRollup(t, pid)
					pss += p
				}
				t.Logf("rep %d %s: pss %.0f KiB per pod %v after the last pod started", rep, name, pss/float64(pods), at)
			}
			if hold > 0 {
				t.Logf("holding %v; shims %v", hold, c.ShimPids(rt))
				time.Sleep(hold)
			}
			b.removePods(ids)
		}
	}
}

// startLab starts the private containerd of a lab and returns the runtimes
// it compares (watch and runc, or watch and watchB with BENCH_AB) and the
// repetitions (BENCH_REPS, else reps).
func startLab(t *testing.T, reps int) (*harness.Containerd, []string, *abSwap, int) {
	if v, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && v > 0 {
		reps = v
	}
	if !harness.HasWatchShim() {
		t.Fatal(".bin/" + harness.WatchShim + " missing: run make build")
	}
	c := harness.Start(t, harness.Options{Version: "2.4", LogLevel: "info"})
	names := runtimes
	ab := newABSwap(t)
	if ab != nil {
		names = []string{"watch", "watchB"}
	}
	return c, names, ab, reps
}

// runtimeFor puts the build that name stands for in place (with BENCH_AB)
// and returns the CRI handler to use, or "" when BENCH_ONLY leaves name out.
func runtimeFor(ab *abSwap, name string) string {
	if only := os.Getenv("BENCH_ONLY"); only != "" && only != name {
		return ""
	}
	if ab == nil {
		return name
	}
	ab.use(name == "watchB")
	return "watch"
}
