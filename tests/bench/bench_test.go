//go:build bench

// Package bench measures the watch shim against the stock runc shim on the
// same private containerd (see README.md). Run it with `make bench`.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

var (
	pods       = 10  // pods of the memory and pod start figures
	burstExecs = 200 // execs exiting at once for exit→event latency
	stormExecs = 500 // execs in one container exiting at once
)

const (
	extraCtrs     = 4  // containers added to each pod for the 5-container figure
	burstCtrs     = 4  // containers of the burst pod
	createWorkers = 16 // parallel Exec+Start calls while setting up a burst
)

// runtimes are the CRI handlers compared; "runc" is the stock shim.
var runtimes = []string{"runc", "watch"}

func TestMain(m *testing.M) {
	if os.Getenv("WATCH_REPO_ROOT") == "" {
		// harness.RepoRoot would stop at this module's go.mod.
		if root, err := filepath.Abs("../.."); err == nil {
			os.Setenv("WATCH_REPO_ROOT", root)
		}
	}
	if os.Getenv("BENCH_QUICK") != "" { // a smoke run while developing
		pods, burstExecs, stormExecs = 3, 20, 40
		probeWindow, serialExecs = 10*time.Second, 40
		logExecs, logLifecycles = 40, 2
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_PROBE_SECONDS")); err == nil && v > 0 {
		probeWindow = time.Duration(v) * time.Second
	}
	os.Exit(m.Run())
}

// TestBench runs BENCH_REPS repetitions (default 5), each on a fresh
// containerd with both runtimes, alternating which runtime goes first.
func TestBench(t *testing.T) {
	reps := 5
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && n > 0 {
		reps = n
	}
	version := os.Getenv("BENCH_CONTAINERD")
	if version == "" {
		version = "2.4"
	}
	if !harness.HasWatchShim() {
		t.Fatal(".bin/" + harness.WatchShim + " missing: run make build")
	}
	run := &Run{Started: time.Now().UTC(), Reps: reps, Containerd: version, LoadBefore: loadavg(),
		Raw: map[string]map[string][]float64{}}
	for _, rt := range runtimes {
		run.Raw[rt] = map[string][]float64{}
	}
	for rep := 0; rep < reps; rep++ {
		order := []string{"runc", "watch"}
		if rep%2 == 1 {
			order = []string{"watch", "runc"}
		}
		ok := t.Run(fmt.Sprintf("rep%d", rep), func(t *testing.T) {
			c := harness.Start(t, harness.Options{Version: version, LogLevel: "info"})
			for _, rt := range order {
				b := &bencher{t: t, c: c, rt: rt, rep: rep}
				m := b.run()
				t.Logf("rep %d %s: %s", rep, rt, fmtMetrics(m))
				for k, v := range m {
					run.Raw[rt][k] = append(run.Raw[rt][k], v)
				}
			}
			m := nodeLogFigures(t, c, version, rep)
			t.Logf("rep %d watch node log: %s", rep, fmtMetrics(m))
			for k, v := range m {
				run.Raw["watch"][k] = append(run.Raw["watch"][k], v)
			}
		})
		if !ok {
			t.Fatalf("repetition %d failed", rep)
		}
		run.Order = append(run.Order, strings.Join(order, ","))
	}
	run.LoadAfter = loadavg()
	run.Finished = time.Now().UTC()
	if err := run.write(); err != nil {
		t.Fatal(err)
	}
}

// bencher measures one runtime on one containerd.
type bencher struct {
	t   *testing.T
	c   *harness.Containerd
	rt  string
	rep int
	m   map[string]float64
	// perf, when set, records the shims with perf from just before the
	// release until the last Wait returned, into perf-<name>-<rep>.data
	// under this dir (labs only: perf's own cost skews the figures).
	perf string
	// name is the runtime's name in the lab's lines and perf's files
	// (watchB for BENCH_AB's build, which runs as rt "watch"); rt if empty.
	name string
	cri  runtimeapi.RuntimeServiceClient // containerd's CRI, dialled on first use
}

func (b *bencher) run() map[string]float64 {
	b.m = map[string]float64{}
	b.podFigures()
	b.burstFigures()
	return b.m
}

// podFigures: pod start latency; per-pod shim memory and resources at rest
// with 1 container per pod; the exec figures on those pods; then memory and
// resources at rest with 5 containers per pod.
func (b *bencher) podFigures() {
	s := b.startSleepers(fmt.Sprintf("p%d-%s", b.rep, b.rt))
	b.m["pod_start_ms"] = median(s.startMs)
	b.m["pod_sandbox_ms"] = median(s.sandboxMs)
	b.m["pod_create_ms"] = median(s.createMs)
	b.m["pod_startctr_ms"] = median(s.startCtrMs)
	b.restFigures("1c")
	b.execFigures(s.ctrIDs, b.restRate("1c"))
	b.addContainers(s.podIDs, s.pods)
	b.restFigures("5c")
	b.removePods(s.podIDs)
}

// addContainers adds extraCtrs containers to each pod.
func (b *bencher) addContainers(ids []string, podList []harness.Pod) {
	c := b.c
	for i, podID := range ids {
		podPath := b.json("pod-"+podList[i].Name, c.PodConfig(podList[i]))
		for j := 1; j <= extraCtrs; j++ {
			ctPath := b.json("ctr", c.ContainerConfig(sleeper(fmt.Sprintf("c%d", j))))
			b.crictl("start", b.crictl("create", podID, ctPath, podPath))
		}
	}
}

// restCPUWindow is how long restFigures measures shim CPU at rest.
const restCPUWindow = 15 * time.Second

// restFigures records shim memory and resources per pod after a settle time.
func (b *bencher) restFigures(suffix string) {
	time.Sleep(3 * time.Second)
	pids := b.c.ShimPids(b.rt)
	b.m["shims_"+suffix] = float64(len(pids))
	var pss, rss, anon, threads, fds, gor float64
	for _, pid := range pids {
		r, p := smapsRollup(b.t, pid)
		rss += r
		pss += p
		st, _ := harness.ReadProcStatus(pid)
		anon += float64(st.RssAnon)
		threads += float64(st.Threads)
		fds += float64(st.FDs)
		if b.rt == "watch" {
			gor += watchCounter(b.t, pid, "goroutines")
		}
	}
	n := float64(pods)
	// CPU at rest: containerd's CRI asks every container for its stats once
	// a second (stats_collect_period), so a shim is never idle.
	cpu0 := shimCPU(pids)
	time.Sleep(restCPUWindow)
	b.m["rest_cpu_ms_per_min_"+suffix] = (shimCPU(pids) - cpu0) / n * float64(time.Minute) / float64(restCPUWindow)
	// PSS again once the pods have run a while: what a shim keeps after its
	// first stats polls and lazily built state, not just after start-up.
	var late float64
	for _, pid := range pids {
		_, p := smapsRollup(b.t, pid)
		late += p
	}
	b.m["pss_late_kib_"+suffix] = late / n
	b.m["pss_kib_"+suffix] = pss / n
	b.m["rss_kib_"+suffix] = rss / n
	b.m["anon_kib_"+suffix] = anon / n
	b.m["threads_"+suffix] = threads / n
	b.m["fds_"+suffix] = fds / n
	if b.rt == "watch" {
		b.m["goroutines_"+suffix] = gor / n
	}
}

func (b *bencher) removePods(ids []string) {
	b.crictl(append([]string{"rmp", "--force"}, ids...)...)
	deadline := time.Now().Add(60 * time.Second)
	for len(b.c.ShimPids(b.rt)) > 0 {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s shims still running 60s after removing the pods: %v", b.rt, b.c.ShimPids(b.rt))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// burstFigures: one pod with burstCtrs containers sharing a host dir with a
// FIFO. Execs block opening the FIFO for reading; opening it for writing
// from the host wakes them all at once (the kernel wakes every reader
// blocked in open when a writer arrives), so they really exit together.
func (b *bencher) burstFigures() {
	bp := b.burstPod()
	b.eventFigures(bp)
	b.stormFigures(bp)
	b.removePods([]string{bp.podID})
}

// burstPodInfo is the pod of the burst figures.
type burstPodInfo struct {
	podID, fifo string
	ctrs        []string
	tc          tasks.TasksClient
}

// burstPod starts the pod of the burst figures.
func (b *bencher) burstPod() burstPodInfo {
	var names []string
	for i := 0; i < burstCtrs; i++ {
		names = append(names, fmt.Sprintf("b%d", i))
	}
	return b.fifoPod(fmt.Sprintf("burst%d-%s", b.rep, b.rt), "trig-"+b.rt, names...)
}

// fifoPod runs pod name with sleeping containers named names, each with
// the host directory trigDir (under c.Dir) at /trig, where fifo is.
func (b *bencher) fifoPod(name, trigDir string, names ...string) burstPodInfo {
	t, c := b.t, b.c
	trig := filepath.Join(c.Dir, trigDir)
	if err := os.MkdirAll(trig, 0o755); err != nil {
		t.Fatal(err)
	}
	p := harness.Pod{Name: name}
	if err := os.MkdirAll(filepath.Join(c.Dir, "pods", p.Name), 0o755); err != nil {
		t.Fatal(err)
	}
	podPath := b.json("pod-"+p.Name, c.PodConfig(p))
	bp := burstPodInfo{podID: b.crictl("runp", "--runtime", b.rt, podPath), fifo: filepath.Join(trig, "go")}
	for _, n := range names {
		cfg := c.ContainerConfig(sleeper(n))
		cfg["mounts"] = []map[string]any{{"container_path": "/trig", "host_path": trig}}
		id := b.crictl("create", bp.podID, b.json("ctr", cfg), podPath)
		b.crictl("start", id)
		bp.ctrs = append(bp.ctrs, id)
	}
	tc, err := c.Tasks()
	if err != nil {
		t.Fatal(err)
	}
	bp.tc = tc
	return bp
}

// eventFigures: figure 3, exit → TaskExit latency for burstExecs execs in
// burstCtrs containers; and exit → visible to a consumer: for the stock
// shim the same containerd event subscriber, for watch a node log consumer
// (watchapi) in the same burst.
func (b *bencher) eventFigures(bp burstPodInfo) {
	t, c := b.t, b.c
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lw *logWatcher
	if b.rt == "watch" {
		lw = b.watchExits(ctx, "x", burstExecs)
	}
	r := b.burst(bp.tc, bp.fifo, bp.ctrs, burstExecs, "x", events)
	b.m["exit_event_p50_ms"] = percentile(r.eventLat, 50)
	b.m["exit_event_p99_ms"] = percentile(r.eventLat, 99)
	b.m["exit_event_max_ms"] = percentile(r.eventLat, 100)
	// The split: how long the shim took to send (its envelope timestamp;
	// containerd forwards the envelope unchanged) and the rest, containerd
	// and the subscriber.
	if len(r.shimLat) == len(r.eventLat) {
		b.m["exit_send_p99_ms"] = percentile(r.shimLat, 99)
	}
	b.m["burst200_wait_wall_ms"] = r.exitWall
	visible := r.eventLat
	if lw != nil {
		visible = lw.wait(t, 60*time.Second)
	}
	b.m["exit_visible_p50_ms"] = percentile(visible, 50)
	b.m["exit_visible_p99_ms"] = percentile(visible, 99)
}

// stormFigures: figures 4 and 5, stormExecs execs in one container.
func (b *bencher) stormFigures(bp burstPodInfo) {
	r := b.burst(bp.tc, bp.fifo, bp.ctrs[:1], stormExecs, "s", nil)
	b.m["exec500_exit_wall_ms"] = r.exitWall
	b.m["exec500_total_wall_ms"] = r.totalWall
	b.m["exec500_other_cpu_ms"] = r.otherCPU
	b.m["cpu_ms_per_1000_execs"] = r.cpuAll * 1000 / float64(stormExecs)
	b.m["cpu_ms_per_1000_exits"] = r.cpuExit * 1000 / float64(stormExecs)
	b.m["sys_ms_per_1000_exits"] = r.sysExit * 1000 / float64(stormExecs)
	b.m["ctx_switches_per_exit"] = float64(r.ctxExit) / float64(stormExecs)
}

type burstResult struct {
	exitWall  float64   // ms from the release until the last Wait returned
	reapWall  float64   // ms from the release until the last exit was reaped (its exited_at)
	totalWall float64   // ms from the first Exec until the last Wait returned
	cpuAll    float64   // shim CPU ms for Exec+Start+exit+Wait+Delete of all execs
	cpuExit   float64   // shim CPU ms from the release until the last Wait returned
	schedExit float64   // the same from the threads' schedstat (ns resolution, live threads only)
	otherCPU  float64   // ms of machine CPU from the release until the last Wait, less the shim's, per CPU
	sysExit   float64   // of cpuExit, the kernel's share (stime)
	ctxExit   int       // the shim threads' context switches from the release until the last Wait
	eventLat  []float64 // ms from exited_at to receipt by the ctr events subscriber
	shimLat   []float64 // ms from exited_at to the envelope timestamp the shim set when it sent the event
}

// burst starts n execs blocked on the FIFO, spread over ctrs, with a Wait
// in flight for each, releases them together and waits for all.
func (b *bencher) burst(tc tasks.TasksClient, fifo string, ctrs []string, n int, prefix string, events <-chan harness.Event) burstResult {
	t, c := b.t, b.c
	if err := syscall.Mkfifo(fifo, 0o666); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	shims := c.ShimPids(b.rt)
	if len(shims) == 0 {
		t.Fatalf("%s: no shim", b.rt)
	}
	execID := func(i int) string { return fmt.Sprintf("%s%d-%d", prefix, b.rep, i) }
	ctrOf := func(i int) string { return ctrs[i%len(ctrs)] }

	// Event receipts, recorded as soon as ctr prints them.
	var evMu sync.Mutex
	var eventLat, shimLat []float64
	var trace []eventTimes
	evDone := make(chan struct{})
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		want[execID(i)] = true
	}
	if events != nil {
		go func() {
			defer close(evDone)
			got := 0
			for e := range events {
				now := time.Now()
				// TaskExit carries the exec ID in "id" (no exec_id field).
				if e.Topic != "/tasks/exit" || !want[e.ID] {
					continue
				}
				evMu.Lock()
				eventLat = append(eventLat, ms(now.Sub(e.ExitedAt)))
				sent, err := time.Parse(ctrTimeLayout, e.Timestamp)
				if err == nil {
					shimLat = append(shimLat, ms(sent.Sub(e.ExitedAt)))
				}
				trace = append(trace, eventTimes{id: e.ID, exited: e.ExitedAt, sent: sent, received: now})
				evMu.Unlock()
				if got++; got == n {
					return
				}
			}
		}()
	}

	spec, _ := json.Marshal(specs.Process{Args: []string{"sh", "-c", "read x </trig/go; exit 0"},
		Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}})
	cpu0 := shimCPU(shims)
	tStart := time.Now()
	pids := make([]uint32, n)
	waitDone := make([]time.Time, n)
	exitedAt := make([]time.Time, n)
	var errMu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		errMu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		errMu.Unlock()
	}
	var waits sync.WaitGroup
	work := make(chan int)
	var workers sync.WaitGroup
	for w := 0; w < createWorkers; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range work {
				ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 2*time.Minute)
				_, err := tc.Exec(ctx, &tasks.ExecProcessRequest{ContainerID: ctrOf(i), ExecID: execID(i),
					Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec}})
				if err == nil {
					var resp *tasks.StartResponse
					resp, err = tc.Start(ctx, &tasks.StartRequest{ContainerID: ctrOf(i), ExecID: execID(i)})
					if err == nil {
						pids[i] = resp.Pid
					}
				}
				cancel()
				if err != nil {
					fail("exec %s: %v", execID(i), err)
					continue
				}
				waits.Add(1)
				go func(i int) {
					defer waits.Done()
					ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 5*time.Minute)
					defer cancel()
					resp, err := tc.Wait(ctx, &tasks.WaitRequest{ContainerID: ctrOf(i), ExecID: execID(i)})
					waitDone[i] = time.Now()
					if err == nil {
						exitedAt[i] = resp.ExitedAt.AsTime()
					}
					if err != nil {
						fail("wait %s: %v", execID(i), err)
					} else if resp.ExitStatus != 0 {
						fail("exec %s: exit status %d", execID(i), resp.ExitStatus)
					}
				}(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	workers.Wait()
	if len(errs) > 0 {
		t.Fatalf("%s: %d errors starting execs, first: %s", b.rt, len(errs), errs[0])
	}
	waitBlocked(t, pids)
	time.Sleep(500 * time.Millisecond) // let every Wait reach the shim

	stopPerf := b.startPerf(shims, prefix)
	cpuR, schedR, busyR := shimCPU(shims), schedCPU(shims), machineBusy(t)
	sysR, ctxR := shimSysCPU(shims), contextSwitches(shims)
	tRelease := time.Now()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	waits.Wait()
	cpuW, schedW, busyW := shimCPU(shims), schedCPU(shims), machineBusy(t)
	sysW, ctxW := shimSysCPU(shims), contextSwitches(shims)
	stopPerf()
	if len(errs) > 0 {
		t.Fatalf("%s: %d errors waiting for execs, first: %s", b.rt, len(errs), errs[0])
	}
	var last, lastExit time.Time
	for i, d := range waitDone {
		if d.After(last) {
			last = d
		}
		if exitedAt[i].After(lastExit) {
			lastExit = exitedAt[i]
		}
	}
	if events != nil {
		select {
		case <-evDone:
		case <-time.After(60 * time.Second):
			t.Errorf("%s: only %d of %d exit events within 60s", b.rt, len(eventLat), n)
		}
	}
	// Delete the exec processes (part of an exec's cost in the shim).
	del := make(chan int)
	var delWG sync.WaitGroup
	for w := 0; w < createWorkers; w++ {
		delWG.Add(1)
		go func() {
			defer delWG.Done()
			for i := range del {
				ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), time.Minute)
				if _, err := tc.DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: ctrOf(i), ExecID: execID(i)}); err != nil {
					fail("delete %s: %v", execID(i), err)
				}
				cancel()
			}
		}()
	}
	for i := 0; i < n; i++ {
		del <- i
	}
	close(del)
	delWG.Wait()
	cpu1 := shimCPU(shims)
	if len(errs) > 0 {
		t.Fatalf("%s: %d errors deleting execs, first: %s", b.rt, len(errs), errs[0])
	}
	os.Remove(fifo)
	evMu.Lock()
	defer evMu.Unlock()
	b.writeTrace(prefix, tRelease, trace)
	return burstResult{
		sysExit:   sysW - sysR,
		ctxExit:   ctxW - ctxR,
		exitWall:  ms(last.Sub(tRelease)),
		reapWall:  ms(lastExit.Sub(tRelease)),
		totalWall: ms(last.Sub(tStart)),
		cpuAll:    cpu1 - cpu0,
		cpuExit:   cpuW - cpuR,
		schedExit: schedW - schedR,
		otherCPU:  (busyW - busyR - (cpuW - cpuR)) / float64(runtime.NumCPU()),
		eventLat:  append([]float64(nil), eventLat...),
		shimLat:   append([]float64(nil), shimLat...),
	}
}

// ctrTimeLayout is how `ctr events` prints an envelope's timestamp.
const ctrTimeLayout = "2006-01-02 15:04:05.999999999 -0700 MST"

// waitBlocked waits until every pid sleeps in the FIFO open (wchan), at
// most 60 s.
func waitBlocked(t *testing.T, pids []uint32) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		blocked := 0
		var other string
		for _, pid := range pids {
			w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
			if s := string(w); strings.Contains(s, "fifo") || strings.Contains(s, "partner") || strings.Contains(s, "pipe") {
				blocked++
			} else {
				other = fmt.Sprintf("pid %d wchan %q", pid, s)
			}
		}
		if blocked == len(pids) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d execs blocked on the FIFO after 60s (%s)", blocked, len(pids), other)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sleeper(name string) harness.Container {
	return harness.Container{Name: name, Command: []string{"sleep", "3600"}}
}

func (b *bencher) json(name string, v any) string {
	path, err := b.c.WriteJSON(name, v)
	if err != nil {
		b.t.Fatal(err)
	}
	return path
}

// startPod makes the calls the kubelet makes to start a pod of one container
// (RunPodSandbox, CreateContainer, StartContainer) straight on containerd's
// CRI socket, and returns the pod's and the container's IDs and how long the
// three took in ms. crictl is not used for it: each crictl run adds ~75 ms
// of its own start-up and image checks, the same for both runtimes, which
// would dilute the ratio.
// podStart is one pod started by startPod: its ids, and how long each CRI
// call took (ms).
type podStart struct {
	podID, ctrID              string
	sandbox, create, startCtr float64
}

// total is the pod's start, RunPodSandbox to StartContainer returned.
func (p podStart) total() float64 { return p.sandbox + p.create + p.startCtr }

// startPod runs a pod sandbox with one container in it through CRI and
// times each of the three calls.
func (b *bencher) startPod(pod, ctr map[string]any) podStart {
	cri := b.criClient()
	podCfg, ctrCfg := new(runtimeapi.PodSandboxConfig), new(runtimeapi.ContainerConfig)
	criConfig(b.t, pod, podCfg)
	criConfig(b.t, ctr, ctrCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var p podStart
	start := time.Now()
	pr, err := cri.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: b.rt})
	if err != nil {
		b.t.Fatalf("%s: RunPodSandbox: %v", b.rt, err)
	}
	p.podID, p.sandbox = pr.PodSandboxId, ms(time.Since(start))
	start = time.Now()
	cr, err := cri.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pr.PodSandboxId, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		b.t.Fatalf("%s: CreateContainer: %v", b.rt, err)
	}
	p.ctrID, p.create = cr.ContainerId, ms(time.Since(start))
	start = time.Now()
	if _, err := cri.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		b.t.Fatalf("%s: StartContainer: %v", b.rt, err)
	}
	p.startCtr = ms(time.Since(start))
	return p
}

// criClient returns a client of containerd's CRI, dialled on first use.
func (b *bencher) criClient() runtimeapi.RuntimeServiceClient {
	if b.cri == nil {
		conn, err := grpc.NewClient("unix://"+b.c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.t.Fatal(err)
		}
		b.t.Cleanup(func() { conn.Close() })
		b.cri = runtimeapi.NewRuntimeServiceClient(conn)
	}
	return b.cri
}

// criConfig fills m, a CRI message, from v, a config in crictl's JSON form
// (the proto field names).
func criConfig(t *testing.T, v map[string]any, m proto.Message) {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
}

func (b *bencher) crictl(args ...string) string {
	out, err := b.c.Crictl(args...)
	if err != nil {
		b.t.Fatalf("%s: %v", b.rt, err)
	}
	return strings.TrimSpace(out)
}

// smapsRollup returns Rss and Pss of pid in KiB.
func smapsRollup(t *testing.T, pid int) (rss, pss float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss
}

// machineBusy returns the CPU time the whole machine spent not idle, in ms
// summed over CPUs, from /proc/stat.
func machineBusy(t *testing.T) float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, iowait, guest
			busy += n
		}
	}
	return busy * 1000 / clockTicks
}

// shimCPU returns utime+stime of pids in ms (own threads, not children).
func shimCPU(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		u, st := procTicks(pid)
		ticks += u + st
	}
	return ticks * 1000 / clockTicks
}

// procTicks returns utime and stime of pid in clock ticks from
// /proc/PID/stat (0, 0 when it is gone).
func procTicks(pid int) (utime, stime float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0
	}
	utime, _ = strconv.ParseFloat(f[11], 64)
	stime, _ = strconv.ParseFloat(f[12], 64)
	return utime, stime
}

const clockTicks = 100 // sysconf(_SC_CLK_TCK) on Linux

// watchCounter asks a watch shim for one of its counters.
func watchCounter(t *testing.T, pid int, name string) float64 {
	m, err := harness.WatchCounters(pid)
	if err != nil {
		t.Fatal(err)
	}
	return m[name]
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 { return percentile(v, 50) }

// percentile returns the nearest-rank percentile p (0-100) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	rank := int(p/100*float64(len(s)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

func fmtMetrics(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, m[k]))
	}
	return strings.Join(parts, " ")
}
