//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestExecStorm: 1000 execs with random exit codes across 5 containers of
// one shim group, 16 at a time. Every code must come back right, nothing
// may hang, and afterwards the shim's open fds (and, for watch, its
// goroutines) must return to their baseline.
func TestExecStorm(t *testing.T) {
	const containers, parallel = 5, 16
	execs := 1000
	if n, err := strconv.Atoi(os.Getenv("WATCH_STORM_EXECS")); err == nil {
		execs = n
	}
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		if vs := harness.Versions(); c.Version != vs[len(vs)-1] {
			t.Skip("the storm runs on the newest containerd only, to fit CI's time")
		}
		for i := 0; i < containers; i++ {
			id := fmt.Sprintf("storm%d", i)
			mustCtr(t, c, "run", "-d", "--runtime", rt.Type, "--annotation", "io.containerd.watch.v2.group=storm",
				harness.BusyboxImage, id, "sleep", "600")
		}
		pids := c.ShimPids(rt.Handler)
		t.Logf("%s: %d shim process(es) for %d containers", rt.Handler, len(pids), containers)
		before := shimResources(t, pids)
		start := time.Now()
		wrong := runStorm(t, c, containers, execs, parallel)
		t.Logf("%s: %d execs in %s, %d wrong exit codes", rt.Handler, execs, time.Since(start).Round(time.Millisecond), wrong)
		if wrong > 0 {
			t.Errorf("%s: %d of %d execs reported a wrong exit code", rt.Handler, wrong, execs)
		}
		after := settle(t, pids, before)
		t.Logf("%s: shim resources before %+v after %+v", rt.Handler, before, after)
		if rt.Handler != "watch" {
			return
		}
		if after.FDs > before.FDs {
			t.Errorf("watch: shim fds %d after the storm, %d before", after.FDs, before.FDs)
		}
		if after.Goroutines > before.Goroutines || after.Goroutines == 0 {
			t.Errorf("watch: shim goroutines %d after the storm, %d before", after.Goroutines, before.Goroutines)
		}
	})
}

// runStorm runs the execs and returns how many reported a wrong code.
func runStorm(t *testing.T, c *harness.Containerd, containers, execs, parallel int) int {
	var (
		mu    sync.Mutex
		wrong int
		wg    sync.WaitGroup
		work  = make(chan int)
	)
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				code := rand.IntN(256)
				id := fmt.Sprintf("storm%d", n%containers)
				_, err := c.Ctr("task", "exec", "--exec-id", fmt.Sprintf("e%d", n), id, "sh", "-c", fmt.Sprintf("exit %d", code))
				if got := harness.ExitCode(err); got != code {
					mu.Lock()
					wrong++
					if wrong <= 5 {
						t.Logf("exec e%d in %s: exit %d, want %d (%v)", n, id, got, code, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for n := 0; n < execs; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	return wrong
}

// resources are what a set of shim processes holds.
type resources struct {
	FDs, Threads, Goroutines int
}

func shimResources(t *testing.T, pids []int) resources {
	t.Helper()
	var r resources
	for _, pid := range pids {
		st, _ := harness.ReadProcStatus(pid) // a shim gone counts zero
		r.FDs += st.FDs
		r.Threads += st.Threads
		r.Goroutines += watchGoroutines(pid)
	}
	return r
}

// settle waits up to 10 s for the shims to give back what the storm took.
func settle(t *testing.T, pids []int, before resources) resources {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := shimResources(t, pids)
		if (r.FDs <= before.FDs && r.Goroutines > 0 && r.Goroutines <= before.Goroutines) || time.Now().After(deadline) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// watchGoroutines asks a watch shim for its goroutine count (0 for others).
func watchGoroutines(pid int) int {
	m, _ := harness.WatchCounters(pid) // nil for a stock shim
	return int(m["goroutines"])
}
