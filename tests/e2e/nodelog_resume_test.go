//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// resumer is a consumer made of `containerd-shim-watch-v2 watch -o json`
// processes: each is SIGKILLed after a few lines and the next one started
// with --since the cursor of the last line read.
type resumer struct {
	bin, dir string
	mu       sync.Mutex
	recs     []nodelog.Record
	cursor   string
	restarts int
}

// run consumes until ctx ends, killing the watcher every `every` lines.
func (r *resumer) run(ctx context.Context, every int) error {
	for ctx.Err() == nil {
		args := []string{"watch", "-o", "json"}
		if r.cursor != "" {
			args = append(args, "--since", r.cursor)
		}
		cmd := exec.Command(r.bin, args...)
		cmd.Env = append(cmd.Environ(), nodelog.DirEnv+"="+r.dir)
		out, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		n := 0
		for n < every && sc.Scan() {
			var l struct {
				Cursor string `json:"cursor"`
				nodelog.Record
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return fmt.Errorf("watch line %q: %w", sc.Text(), err)
			}
			n++
			r.mu.Lock()
			if l.Event != "initial_state_done" {
				r.recs = append(r.recs, l.Record)
			}
			r.cursor = l.Cursor
			r.mu.Unlock()
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		stop()
		if n < every && ctx.Err() == nil {
			return fmt.Errorf("watch ended after %d lines: %s", n, stderr.String())
		}
		r.restarts++
	}
	return nil
}

// resumeScale is the size of TestNodeLogResume: lifecycles, parallel
// workers running them, and lines a consumer process reads before its
// SIGKILL.
type resumeScale struct{ lifecycles, workers, every int }

func resumeScales() resumeScale {
	if fullScale() {
		return resumeScale{lifecycles: 200, workers: 4, every: 60}
	}
	return resumeScale{lifecycles: 18, workers: 1, every: 7}
}

// TestNodeLogResume (issue 18, must-show 2): a consumer made of CLI
// processes, each SIGKILLed after a few lines and restarted from its last
// cursor, follows pod + container + exec lifecycles during which
// containerd restarts and a shim is SIGKILLed. It must receive every
// record of the log exactly once, in revision order, with the true exit
// codes, and each pod's transitions in their order. CI runs 18 lifecycles;
// WATCH_NODELOG_FULL=1 the 200 (see resumeScales).
func TestNodeLogResume(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	sc := resumeScales()
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		if fullScale() && c.Version != harness.Versions()[len(harness.Versions())-1] {
			t.Skip("the full scale runs on the newest containerd only")
		}
		// A pod whose shim is SIGKILLed in the middle, its container running.
		victim := harness.Pod{Name: "nl-victim"}
		victimID, err := c.RunPod(victim, "watch")
		if err != nil {
			t.Fatal(err)
		}
		vct, err := c.CreateContainer(victimID, victim, harness.Container{Name: "app", Command: harness.Sh("sleep 600")})
		if err != nil {
			t.Fatal(err)
		}
		mustCrictl(t, c, "start", vct)

		// The consumer starts from the log's beginning: it is to see every record.
		cl0, err := watchapi.Open(c.NodeLogDir())
		if err != nil {
			t.Fatal(err)
		}
		st0, err := cl0.List()
		cl0.Close()
		if err != nil {
			t.Fatal(err)
		}
		logID, _, _ := strings.Cut(st0.Cursor, ".")
		r := &resumer{bin: filepath.Join(bin, harness.WatchShim), dir: c.NodeLogDir(), cursor: logID + ".0"}
		ctx, cancel := context.WithCancel(context.Background())
		consumed := make(chan error, 1)
		go func() { consumed <- r.run(ctx, sc.every) }()
		codes := map[string]int{}
		phase := func(from, to int) { runLifecycles(t, c, from, to, sc.workers, codes) }
		n := sc.lifecycles
		started := time.Now()
		phase(0, n/3)
		if err := c.Restart(); err != nil {
			t.Fatal(err)
		}
		phase(n/3, 2*n/3)
		pids := c.ShimPids("watch")
		if len(pids) != 1 {
			t.Fatalf("watch shims %v, want the victim's alone", pids)
		}
		events := subscribe(t, c)
		syscall.Kill(pids[0], syscall.SIGKILL)
		waitDeadShimCleaned(t, events, victimID, vct)
		waitState(t, c, vct, "CONTAINER_EXITED")
		mustCrictl(t, c, "rm", vct)
		mustCrictl(t, c, "stopp", victimID)
		mustCrictl(t, c, "rmp", victimID)
		phase(2*n/3, n)
		t.Logf("%d pod + container + exec lifecycles in %s", n, time.Since(started).Round(time.Second))

		// The whole log, read once at the end with the client, is the truth.
		cl, err := watchapi.Open(c.NodeLogDir())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		st, err := cl.List()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(120 * time.Second)
		for time.Now().Before(deadline) {
			r.mu.Lock()
			done := r.cursor == st.Cursor
			r.mu.Unlock()
			if done {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if err := <-consumed; err != nil {
			t.Fatalf("consumer: %v", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		checkResumed(t, r, st.Cursor, codes, vct, vct, victimID)
	})
}

// runLifecycles runs podLifecycle for pods from..to-1 (numbered from 100),
// workers at a time, and records each container's exit code in codes.
func runLifecycles(t *testing.T, c *harness.Containerd, from, to, workers int, codes map[string]int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l, err := podLifecycle(c, 100+i)
				if err != nil {
					t.Error(err)
					continue
				}
				mu.Lock()
				codes[l.id] = l.code
				mu.Unlock()
			}
		}()
	}
	for i := from; i < to && !t.Failed(); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// checkOrder checks each sandbox's, container's and exec's transitions, as
// delivered, against their lifecycle's order.
func checkOrder(t *testing.T, recs []nodelog.Record, victims ...string) {
	t.Helper()
	lives := map[string][]string{}
	for _, rec := range recs {
		k := rec.Kind + "/" + rec.ContainerID + "/" + rec.ExecID
		lives[k] = append(lives[k], rec.Event)
	}
	want := map[string]string{
		nodelog.KindSandbox:   "[created started exited deleted]",
		nodelog.KindContainer: "[created started exited deleted]",
		nodelog.KindExec:      "[exec_added exec_started exited deleted]",
	}
	bad := 0
	for k, life := range lives {
		kind, rest, _ := strings.Cut(k, "/")
		id, _, _ := strings.Cut(rest, "/")
		if slices.Contains(victims, id) {
			continue // its shim was killed: checked on its own
		}
		if got := fmt.Sprint(life); got != want[kind] && bad < 10 {
			bad++
			t.Errorf("%s: transitions %s, want %s", k, got, want[kind])
		}
	}
	t.Logf("per-process order checked for %d sandboxes, containers and execs", len(lives))
}

func checkResumed(t *testing.T, r *resumer, last string, codes map[string]int, victim string, victims ...string) {
	t.Helper()
	_, lastRev, _ := strings.Cut(last, ".")
	if len(r.recs) == 0 || fmt.Sprint(r.recs[len(r.recs)-1].Rev) != lastRev {
		t.Fatalf("the consumer stopped at %s, the log is at %s", r.cursor, last)
	}
	for i, rec := range r.recs {
		if rec.Rev != uint64(i+1) {
			t.Fatalf("record %d has revision %d: a gap or a duplicate", i, rec.Rev)
		}
	}
	exits, execExits := map[string]int{}, 0
	var victimLife []string
	for _, rec := range r.recs {
		if rec.ContainerID == victim && rec.Kind == nodelog.KindContainer {
			e := rec.Event
			if rec.ExitStatus != nil {
				e += fmt.Sprint(":", *rec.ExitStatus)
			}
			victimLife = append(victimLife, e)
		}
		if rec.Event != nodelog.EventExited {
			continue
		}
		if rec.Kind == nodelog.KindExec {
			execExits++
			if *rec.ExitStatus != 4 {
				t.Errorf("exec %s/%s exited %d, want 4", rec.ContainerID, rec.ExecID, *rec.ExitStatus)
			}
		} else if want, ok := codes[rec.ContainerID]; ok {
			exits[rec.ContainerID]++
			if int(*rec.ExitStatus) != want {
				t.Errorf("container %s exited %d, want %d", rec.ContainerID, *rec.ExitStatus, want)
			}
		}
	}
	for id := range codes {
		if exits[id] != 1 {
			t.Errorf("container %s: %d exit records, want 1", id, exits[id])
		}
	}
	if execExits != len(codes) {
		t.Errorf("%d exec exits, want %d", execExits, len(codes))
	}
	if fmt.Sprint(victimLife) != "[created started deleted:137]" {
		t.Errorf("the container whose shim was killed: %v, want [created started deleted:137]", victimLife)
	}
	checkOrder(t, r.recs, victims...)
	t.Logf("%d records delivered exactly once across %d consumer restarts (SIGKILL), a containerd restart and a shim SIGKILL", len(r.recs), r.restarts)
	if r.restarts < 20 {
		t.Errorf("only %d consumer restarts", r.restarts)
	}
}
