//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestEventOrder records containerd's task events over 200 lifecycles
// (container + execs), with one containerd restart in the middle while ten
// of them run, and checks every ordering rule of the shim contract: Create
// < Start < Exit < Delete, ExecAdded < ExecStarted < exec Exit, every
// exec's Exit before its init's, nothing after Delete, exactly one
// TaskExit per process. Violations fail watch; stock's are logged.
func TestEventOrder(t *testing.T) {
	const before, during, after, parallel = 100, 10, 90, 8
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		if vs := harness.Versions(); c.Version != vs[len(vs)-1] {
			t.Skip("the 200-lifecycle recorder runs on the newest containerd only, to fit CI's time")
		}
		rec := newRecorder(t, c)
		each(before, parallel, func(i int) { startLifecycle(t, c, rt, rec, i); endLifecycle(t, c, rec, i) })
		// Ten lifecycles span a containerd restart: started before, their
		// processes end after containerd is back.
		each(during, during, func(i int) { startLifecycle(t, c, rt, rec, before+i) })
		rec.stop()
		if err := c.Restart(); err != nil {
			t.Fatal(err)
		}
		rec.start()
		each(during, during, func(i int) { endLifecycle(t, c, rec, before+i) })
		each(after, parallel, func(i int) {
			startLifecycle(t, c, rt, rec, before+during+i)
			endLifecycle(t, c, rec, before+during+i)
		})
		time.Sleep(time.Second)
		rec.stop()
		v := rec.check(before + during + after)
		for i, msg := range v {
			if i < 20 {
				t.Logf("%s: %s", rt.Handler, msg)
			}
		}
		t.Logf("%s: %d ordering violations or missing/duplicate exits over %d lifecycles", rt.Handler, len(v), before+during+after)
		if rt.Handler == "watch" && len(v) > 0 {
			t.Errorf("watch: %d violations", len(v))
		}
	})
}

// each runs fn(0..n-1) on parallel workers.
func each(n, parallel int, fn func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}

// startLifecycle runs container i, whose init exits with i%100 on SIGTERM,
// with exec e1 (exits i%7) and exec e2 (still running when init exits).
func startLifecycle(t *testing.T, c *harness.Containerd, rt runtime, rec *recorder, i int) {
	id := fmt.Sprintf("life%d", i)
	script := fmt.Sprintf(`trap "exit %d" TERM; while :; do sleep 1; done`, i%100)
	if _, err := c.Ctr("run", "-d", "--runtime", rt.Type, harness.BusyboxImage, id, "sh", "-c", script); err != nil {
		t.Errorf("run %s: %v", id, err)
		return
	}
	rec.expect(id, "e1", "e2")
	if _, err := c.Ctr("task", "exec", "-d", "--exec-id", "e2", id, "sleep", "600"); err != nil {
		t.Errorf("exec e2 in %s: %v", id, err)
	}
	if _, err := c.Ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", fmt.Sprintf("exit %d", i%7)); harness.ExitCode(err) != i%7 {
		t.Errorf("exec e1 in %s: %v", id, err)
	}
}

// endLifecycle ends container i's init with SIGTERM, waits for its
// TaskExit and deletes it.
func endLifecycle(t *testing.T, c *harness.Containerd, rec *recorder, i int) {
	id := fmt.Sprintf("life%d", i)
	if _, err := c.Ctr("task", "kill", "-s", "SIGTERM", id); err != nil {
		t.Errorf("kill %s: %v", id, err)
	}
	if !rec.waitExit(id, time.Minute) {
		t.Errorf("%s: no TaskExit for init seen", id)
	}
	if _, err := c.Ctr("task", "delete", id); err != nil {
		t.Logf("delete task %s: %v", id, err)
	}
	if _, err := c.Ctr("containers", "delete", id); err != nil {
		t.Logf("delete container %s: %v", id, err)
	}
}

// recorder collects task events across containerd restarts.
type recorder struct {
	t      *testing.T
	c      *harness.Containerd
	mu     sync.Mutex
	events []harness.Event
	execs  map[string][]string
	cancel context.CancelFunc
	done   chan struct{}
}

func newRecorder(t *testing.T, c *harness.Containerd) *recorder {
	r := &recorder{t: t, c: c, execs: map[string][]string{}}
	r.start()
	return r
}

func (r *recorder) start() {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := r.c.Events(ctx)
	if err != nil {
		cancel()
		r.t.Fatal(err)
	}
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		for e := range ch {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
}

func (r *recorder) stop() {
	r.cancel()
	<-r.done
}

func (r *recorder) expect(id string, execs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs[id] = execs
}

func (r *recorder) waitExit(id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, e := range r.events {
			if e.Topic == "/tasks/exit" && e.ContainerID == id && e.ID == id {
				r.mu.Unlock()
				return true
			}
		}
		r.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// check returns every rule broken in the recorded stream.
func (r *recorder) check(lifecycles int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := map[string][]harness.Event{}
	for _, e := range r.events {
		if len(e.Topic) > 7 && e.Topic[:7] == "/tasks/" && e.ContainerID != "" {
			byID[e.ContainerID] = append(byID[e.ContainerID], e)
		}
	}
	var v []string
	if len(r.execs) != lifecycles {
		v = append(v, fmt.Sprintf("%d lifecycles started, want %d", len(r.execs), lifecycles))
	}
	for id, execs := range r.execs {
		v = append(v, checkTask(id, execs, byID[id])...)
	}
	return v
}

// checkTask checks one container's events against the ordering rules.
func checkTask(id string, execs []string, evs []harness.Event) []string {
	var v []string
	pos := map[string]int{}   // first position of each key
	exits := map[string]int{} // TaskExit count per process
	deleted := -1
	for i, e := range evs {
		key := e.Topic
		switch e.Topic {
		case "/tasks/exit":
			exits[e.ID]++
			key += ":" + e.ID
		case "/tasks/exec-added", "/tasks/exec-started":
			key += ":" + e.ExecID
		case "/tasks/delete":
			if e.ID != "" && e.ID != id {
				continue
			}
			if deleted < 0 {
				deleted = i
			}
		}
		if deleted >= 0 && i > deleted {
			v = append(v, fmt.Sprintf("%s: %s after TaskDelete", id, e.Topic))
		}
		if _, ok := pos[key]; !ok {
			pos[key] = i
		}
	}
	before := func(a, b string) {
		pa, oka := pos[a]
		pb, okb := pos[b]
		if oka && okb && pa > pb {
			v = append(v, fmt.Sprintf("%s: %s after %s", id, a, b))
		}
	}
	initExit := "/tasks/exit:" + id
	for _, k := range []string{"/tasks/create", "/tasks/start", initExit, "/tasks/delete"} {
		if _, ok := pos[k]; !ok {
			v = append(v, fmt.Sprintf("%s: no %s", id, k))
		}
	}
	before("/tasks/create", "/tasks/start")
	before("/tasks/start", initExit)
	before(initExit, "/tasks/delete")
	for _, ex := range execs {
		before("/tasks/exec-added:"+ex, "/tasks/exec-started:"+ex)
		before("/tasks/exec-started:"+ex, "/tasks/exit:"+ex)
		before("/tasks/exit:"+ex, initExit)
		if exits[ex] != 1 {
			v = append(v, fmt.Sprintf("%s: %d TaskExit for exec %s, want 1", id, exits[ex], ex))
		}
	}
	if exits[id] != 1 {
		v = append(v, fmt.Sprintf("%s: %d TaskExit for init, want 1", id, exits[id]))
	}
	return v
}
