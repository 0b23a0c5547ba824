//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// TestNodeLogSlowConsumer (issue 18, must-show 3): a consumer of the node
// log that reads one record per second does not change how fast exits
// reach containerd. Rounds of execs exiting 3 alternate without and with
// such a consumer (following the log from its start, far behind); a
// subscriber of containerd's events times exit → TaskExit on receipt. The
// medians and p99s of both are logged and compared with generous bounds
// (the machine is shared). WATCH_NODELOG_FULL=1 runs more rounds.
func TestNodeLogSlowConsumer(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	rounds, execs := 2, 20
	if fullScale() {
		rounds, execs = 5, 40
	}
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		if c.Version != harness.Versions()[len(harness.Versions())-1] {
			t.Skip("runs on the newest containerd only, to fit CI's time")
		}
		conn, err := dialContainerd(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		events, err := subscribeGRPC(t.Context(), conn)
		if err != nil {
			t.Fatal(err)
		}
		s := newScenario(t, c, runtime{Handler: "watch", Type: harness.WatchRuntime})
		s.run("slowc", "sleep", "600")
		lat := map[bool][]float64{}
		for r := range 2 * rounds {
			slow := r%2 == 1
			var sc *slowConsumer
			if slow {
				sc = startSlowConsumer(t, c.NodeLogDir())
			}
			lat[slow] = append(lat[slow], exitRound(t, s, events, "slowc", fmt.Sprintf("r%d-", r), execs)...)
			if sc != nil {
				sc.stopAndCheck(t)
			}
		}
		p50, p50Slow := pct(lat[false], 50), pct(lat[true], 50)
		p99, p99Slow := pct(lat[false], 99), pct(lat[true], 99)
		t.Logf("exit → TaskExit at a containerd subscriber, %d exits each: without a slow consumer p50 %.1f ms p99 %.1f ms; with one reading 1 record/s p50 %.1f ms p99 %.1f ms",
			len(lat[false]), p50, p99, p50Slow, p99Slow)
		if p50Slow > 2*p50+250 || p99Slow > 3*p99+1000 {
			t.Errorf("a slow consumer slowed exits: p50 %.1f → %.1f ms, p99 %.1f → %.1f ms", p50, p50Slow, p99, p99Slow)
		}
	})
}

// exitRound starts n execs in container id that exit 3 shortly after, and
// returns each one's exit → TaskExit latency at the subscriber (ms).
func exitRound(t *testing.T, s *scenario, events <-chan stockEvent, id, prefix string, n int) []float64 {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			execID := fmt.Sprintf("%s%d", prefix, i)
			ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), time.Minute)
			defer cancel()
			if _, err := s.tc.Exec(ctx, s.execRequest(id, execID, "sh", "-c", "sleep 0.3; exit 3")); err != nil {
				errs <- fmt.Errorf("exec %s: %w", execID, err)
				return
			}
			if _, err := s.tc.Start(ctx, &tasks.StartRequest{ContainerID: id, ExecID: execID}); err != nil {
				errs <- fmt.Errorf("start %s: %w", execID, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var lat []float64
	timeout := time.After(60 * time.Second)
	for len(lat) < n {
		select {
		case e := <-events:
			if e.Topic != "/tasks/exit" || e.ContainerID != id || !strings.HasPrefix(e.ID, prefix) {
				continue
			}
			if e.ExitStatus != 3 {
				t.Errorf("exec %s: exit status %d, want 3", e.ID, e.ExitStatus)
			}
			lat = append(lat, float64(e.Received.Sub(e.ExitedAt).Microseconds())/1000)
		case <-timeout:
			t.Fatalf("round %s: %d of %d TaskExit events within 60 s", prefix, len(lat), n)
		}
	}
	for i := range n {
		ctx, cancel := context.WithTimeout(s.c.NSContext(context.Background()), time.Minute)
		if _, err := s.tc.DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: id, ExecID: fmt.Sprintf("%s%d", prefix, i)}); err != nil {
			t.Errorf("delete exec %s%d: %v", prefix, i, err)
		}
		cancel()
	}
	return lat
}

// slowConsumer follows the node log from its start with watchapi, one
// record per second.
type slowConsumer struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	read   int
}

func startSlowConsumer(t *testing.T, dir string) *slowConsumer {
	t.Helper()
	cl, err := watchapi.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cl.List()
	if err != nil {
		t.Fatal(err)
	}
	logID, _, _ := strings.Cut(st.Cursor, ".")
	ctx, cancel := context.WithCancel(context.Background())
	sc := &slowConsumer{cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer cl.Close()
		for _, err := range cl.Watch(ctx, logID+".0") {
			if err != nil {
				sc.done <- err
				return
			}
			sc.mu.Lock()
			sc.read++
			sc.mu.Unlock()
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				sc.done <- nil
				return
			}
		}
		sc.done <- nil
	}()
	return sc
}

// stopAndCheck stops the consumer; it must have been reading, and be
// behind (it is to be slow).
func (sc *slowConsumer) stopAndCheck(t *testing.T) {
	t.Helper()
	sc.cancel()
	if err := <-sc.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("slow consumer: %v", err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.read == 0 {
		t.Errorf("the slow consumer read nothing")
	}
	t.Logf("the slow consumer read %d records", sc.read)
}

// pct is the nearest-rank percentile p of v.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
