//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
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

// TestNodeLogResume (issue 18, must-show 2, scaled to this machine): a
// consumer made of CLI processes, each SIGKILLed after a few lines and
// restarted from its last cursor, follows pod + container + exec
// lifecycles during which containerd restarts and a shim is SIGKILLed.
// It must receive every record of the log exactly once, in revision
// order, with the true exit codes.
func TestNodeLogResume(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
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
		go func() { consumed <- r.run(ctx, 7) }()
		var codes = map[string]int{}
		phase := func(from, to int) {
			for i := from; i < to; i++ {
				l, err := podLifecycle(c, 100+i)
				if err != nil {
					t.Fatal(err)
				}
				codes[l.id] = l.code
			}
		}
		phase(0, 6)
		if err := c.Restart(); err != nil {
			t.Fatal(err)
		}
		phase(6, 12)
		pids := c.ShimPids("watch")
		if len(pids) != 1 {
			t.Fatalf("watch shims %v, want the victim's alone", pids)
		}
		syscall.Kill(pids[0], syscall.SIGKILL)
		waitState(t, c, vct, "CONTAINER_EXITED")
		mustCrictl(t, c, "rm", vct)
		mustCrictl(t, c, "stopp", victimID)
		mustCrictl(t, c, "rmp", victimID)
		phase(12, 18)

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
		deadline := time.Now().Add(30 * time.Second)
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
		checkResumed(t, r, st.Cursor, codes, vct)
	})
}

func checkResumed(t *testing.T, r *resumer, last string, codes map[string]int, victim string) {
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
	t.Logf("%d records delivered exactly once across %d consumer restarts (SIGKILL), a containerd restart and a shim SIGKILL", len(r.recs), r.restarts)
	if r.restarts < 20 {
		t.Errorf("only %d consumer restarts", r.restarts)
	}
}
