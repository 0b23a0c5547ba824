//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// leakStorm is the number of pods started at once, each by a client that
// gives up after leakClientTimeout (crictl -t 1s; a kubelet cancels the
// same way when it restarts or its request times out).
const (
	leakStorm         = 20
	leakClientTimeout = time.Second
	// leakSettle bounds how long the node may take to be clean again once
	// every pod is removed: the shim's idle grace plus its drain.
	leakSettle = 45 * time.Second
)

// TestLeakCancelledPodStarts: 20 RunPodSandbox calls at once whose client
// gives up after 1 s, then every pod stopped and removed. Afterwards no
// shim process, no shim socket and no bundle may be left. The stock shim
// runs the same storm and its numbers are logged; only watch must pass.
func TestLeakCancelledPodStarts(t *testing.T) {
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		// On a loaded machine the client may give up before containerd
		// even starts a shim; storm again until enough cancelled starts
		// reached the shim.
		reached, returned := 0, 0
		for round := 1; round <= leakRounds && reached < leakMinReached; round++ {
			ok, cancelled := leakRunStorm(t, c, rt)
			leakRemovePods(t, c)
			returned += ok
			reached = leakShimStarts(c) - returned
			t.Logf("%s round %d: %d of %d pod starts returned, %d cancelled by the client; %d cancelled starts reached the shim so far",
				rt.Handler, round, ok, leakStorm, cancelled, reached)
		}
		left := leakWaitClean(c, rt, leakSettle)
		t.Logf("%s: %s after removing every pod", rt.Handler, left)
		t.Logf("%s: containerd log: %s", rt.Handler, leakLogCounts(c))
		if len(left.known) > 0 {
			// containerd's tasks service keeps a task whose Create
			// succeeded but whose PID call then failed on the cancelled
			// context; CRI forgets the pod, containerd does not. The shim
			// must keep serving it.
			t.Logf("%s: containerd leaked %d task(s) CRI no longer knows: %v", rt.Handler, len(left.known), left.known)
		}
		if rt.Handler != "watch" {
			return
		}
		if reached < leakMinReached {
			t.Skipf("only %d cancelled starts reached the shim: the storm did not exercise the leak", reached)
		}
		if !left.clean() {
			t.Errorf("%s: %s %s after every pod was removed", rt.Handler, left, leakSettle)
		}
	})
}

// leakRounds bounds the storms; leakMinReached is how many cancelled pod
// starts must have reached the shim for the test to mean something.
const (
	leakRounds     = 3
	leakMinReached = 5
)

// leakShimStarts counts the tasks containerd began to create with a shim
// (its "creating task" lines), successful or not.
func leakShimStarts(c *harness.Containerd) int {
	data, _ := os.ReadFile(c.LogPath())
	return strings.Count(string(data), `msg="creating task"`)
}

// TestLeakHealthyPodShimStays: a pod started normally keeps its shim
// across the idle grace; a container created in it after the grace runs
// in the same shim; the shim exits once the pod is removed.
func TestLeakHealthyPodShimStays(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	for _, version := range harness.Versions() {
		t.Run(version, func(t *testing.T) {
			c := harness.Start(t, harness.Options{Version: version})
			pod := harness.Pod{Name: "healthy"}
			podID, err := c.RunPod(pod, "watch")
			if err != nil {
				t.Fatal(err)
			}
			pids := c.ShimPids("watch")
			if len(pids) != 1 {
				t.Fatalf("shims serving the pod: %v, want 1", pids)
			}
			time.Sleep(leakIdleGrace + 5*time.Second)
			if now := c.ShimPids("watch"); fmt.Sprint(now) != fmt.Sprint(pids) {
				t.Fatalf("shims after the idle grace: %v, want %v (the pod's shim must stay)", now, pids)
			}
			if out := mustCrictl(t, c, "inspectp", "-o", "go-template", "--template", "{{.status.state}}", podID); strings.TrimSpace(out) != "SANDBOX_READY" {
				t.Errorf("pod state after the grace: %q, want SANDBOX_READY", out)
			}
			id, err := c.CreateContainer(podID, pod, harness.Container{Name: "late", Command: harness.Sh("sleep 600")})
			if err != nil {
				t.Fatal(err)
			}
			mustCrictl(t, c, "start", id)
			waitState(t, c, id, "CONTAINER_RUNNING")
			if now := c.ShimPids("watch"); fmt.Sprint(now) != fmt.Sprint(pids) {
				t.Errorf("shims with a late container: %v, want %v", now, pids)
			}
			mustCrictl(t, c, "rm", "--force", id)
			mustCrictl(t, c, "stopp", podID)
			mustCrictl(t, c, "rmp", podID)
			if left := leakWaitClean(c, runtimes[1], leakSettle); !left.clean() {
				t.Errorf("watch: %s after the pod was removed", left)
			}
		})
	}
}

// leakIdleGrace is how long the watch shim waits, serving nothing, before
// it exits (shim.idleGrace).
const leakIdleGrace = 10 * time.Second

// leakRunStorm starts leakStorm pods at once with a client timeout and
// returns how many starts returned a pod and how many the client gave up on.
func leakRunStorm(t *testing.T, c *harness.Containerd, rt runtime) (ok, cancelled int) {
	t.Helper()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for i := 0; i < leakStorm; i++ {
		pod := harness.Pod{Name: fmt.Sprintf("leak-%s-%d", rt.Handler, i)}
		path, err := c.WriteJSON("pod-"+pod.Name, c.PodConfig(pod))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CrictlWithin(leakClientTimeout, "runp", "--runtime", rt.Handler, path)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case strings.Contains(err.Error(), "DeadlineExceeded") || strings.Contains(err.Error(), "deadline exceeded"):
				cancelled++
			default:
				t.Logf("runp %s: %v", pod.Name, err)
			}
		}()
	}
	wg.Wait()
	return ok, cancelled
}

// leakRemovePods stops and removes every pod. A cancelled RunPodSandbox
// goes on inside containerd until its own cleanup ends, so pods may still
// appear for a while: it repeats until two listings a second apart are
// empty, for at most 30 s.
func leakRemovePods(t *testing.T, c *harness.Containerd) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for empty := 0; empty < 2; {
		out, err := c.Crictl("pods", "-q")
		if err != nil {
			t.Fatal(err)
		}
		ids := strings.Fields(out)
		if len(ids) == 0 {
			empty++
		} else {
			empty = 0
		}
		for _, id := range ids {
			if _, err := c.Crictl("stopp", id); err != nil {
				t.Logf("stopp %s: %v", id, err)
			}
			if _, err := c.Crictl("rmp", id); err != nil {
				t.Logf("rmp %s: %v", id, err)
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("pods left after 30 s of removal: %v", ids)
			return
		}
		time.Sleep(time.Second)
	}
}

// leakLeft is what remains of a runtime's pods on the node. known are
// the tasks containerd itself still lists: their shims, sockets and
// bundles are in use, not leaked.
type leakLeft struct {
	known, shims, sockets, bundles []string
}

// clean: one shim, socket and bundle for each task containerd still knows
// (each is a pod's sandbox) and nothing else.
func (l leakLeft) clean() bool {
	return len(l.shims) == len(l.known) && len(l.sockets) == len(l.known) &&
		fmt.Sprint(l.bundles) == fmt.Sprint(l.known)
}

func (l leakLeft) String() string {
	return fmt.Sprintf("%d shim process(es) %v, %d shim socket(s), %d bundle(s) %v; containerd still lists %d task(s) %v",
		len(l.shims), l.shims, len(l.sockets), len(l.bundles), l.bundles, len(l.known), l.known)
}

// leakWaitClean waits up to timeout for rt's shims, their sockets and
// the task bundles to be gone, but for those of tasks containerd still
// lists, and returns what is left.
func leakWaitClean(c *harness.Containerd, rt runtime, timeout time.Duration) leakLeft {
	deadline := time.Now().Add(timeout)
	for {
		var l leakLeft
		out, _ := c.CtrNS("k8s.io", "tasks", "list", "--quiet")
		l.known = strings.Fields(out)
		sort.Strings(l.known)
		for _, pid := range c.ShimPids(rt.Handler) {
			l.shims = append(l.shims, fmt.Sprintf("%d(%d tasks)", pid, watchTasks(pid)))
		}
		l.sockets = c.LoggedIDSockets("k8s.io")
		l.bundles = c.Bundles("k8s.io")
		if l.clean() || time.Now().After(deadline) {
			return l
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// watchTasks asks a watch shim how many tasks it serves (-1 for others or
// when it does not answer).
func watchTasks(pid int) int {
	m, err := harness.WatchCounters(pid)
	if err != nil {
		return -1
	}
	return int(m["tasks"])
}

// leakLogCounts counts the containerd log lines that tell how shims of
// cancelled starts ended.
func leakLogCounts(c *harness.Containerd) string {
	data, _ := os.ReadFile(c.LogPath())
	log := string(data)
	var parts []string
	for _, what := range []string{"shim killed after context", "failed to create shim task", "create abandoned",
		"no task left: shutting down", "no task served for the idle grace", "shim disconnected"} {
		parts = append(parts, fmt.Sprintf("%q %d", what, strings.Count(log, what)))
	}
	return strings.Join(parts, ", ")
}
