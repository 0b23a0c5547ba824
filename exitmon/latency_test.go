package exitmon

import (
	"path/filepath"
	"testing"
	"time"
)

// bucketOf returns the index of the bucket that counts d.
func bucketOf(d time.Duration) int {
	for i, b := range ExitLatencyBounds {
		if d <= b {
			return i
		}
	}
	return len(ExitLatencyBounds)
}

// TestExitLatencyCountsDeliveredExits: each TaskExit containerd
// acknowledges is counted once, after its retries, by the time from the
// process's exit; other events are not counted.
func TestExitLatencyCountsDeliveredExits(t *testing.T) {
	defer shortBackoff()()
	rec := newRecorder()
	rec.fail = func(_ string, _ any, call int) bool { return call <= 3 }
	ob := newOutbox(rec, 2)
	q := ob.newQueue("")
	now := time.Now()
	q.push("/t", tev{"A", 0})
	for i := range 5 {
		q.pushFree(TopicExit, ExitEvent{ContainerID: "A", ExecID: string(rune('a' + i)), Status: Status{ExitedAt: now.Add(-3 * time.Second)}})
	}
	q.push(TopicExit, ExitEvent{ContainerID: "A", Status: Status{ExitedAt: now.Add(-20 * time.Second)}})
	c := ob.waitSent(t, 7)
	h := c.ExitPublished
	if h.Count != 6 || h.Buckets[bucketOf(3*time.Second)] != 5 || h.Buckets[bucketOf(20*time.Second)] != 1 {
		t.Fatalf("histogram %+v, want 6 exits: 5 in the bucket of 3s, 1 in that of 20s", h)
	}
	if h.Sum < 35*time.Second || h.Sum > 45*time.Second {
		t.Fatalf("sum %v, want 5×3s + 20s and the sends' time", h.Sum)
	}
	if c.EventsRetried == 0 {
		t.Fatalf("no retry: the test did not fail sends")
	}
}

// shortBackoff makes retries quick and returns the restore.
func shortBackoff() func() {
	base, ceiling := backoffBase, backoffCap
	backoffBase, backoffCap = time.Millisecond, 5*time.Millisecond
	return func() { backoffBase, backoffCap = base, ceiling }
}

// TestHistogramBuckets: a bound belongs to its own bucket, anything above
// the last bound to the overflow bucket, a negative duration to the first;
// observing allocates nothing.
func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, time.Millisecond + 1, time.Minute, 2 * time.Hour} {
		h.observe(d)
	}
	want := map[int]uint64{0: 3, 1: 1, len(ExitLatencyBounds) - 1: 1, len(ExitLatencyBounds): 1}
	for i, n := range h.Buckets {
		if n != want[i] {
			t.Errorf("bucket %d: %d, want %d (%v)", i, n, want[i], h.Buckets)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { h.observe(time.Second) }); allocs != 0 {
		t.Errorf("observe allocates %v times", allocs)
	}
}

// TestSpillKeepsExitTime: a TaskExit read back from the spill file (its
// event decoded by the Codec) still carries its exit time.
func TestSpillKeepsExitTime(t *testing.T) {
	s := &spill{path: filepath.Join(t.TempDir(), spillName), codec: codecRecorder{newRecorder()}}
	exited := time.Now().Add(-time.Second).Round(0)
	if err := s.put(item{topic: TopicExit, event: tev{"A", 0}, exited: exited}); err != nil {
		t.Fatal(err)
	}
	it, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	if !it.exited.Equal(exited) {
		t.Fatalf("exit time %v came back as %v", exited, it.exited)
	}
	s.reset()
}
