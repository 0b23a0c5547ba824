package exitmon

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// tev is a test event: task name and its sequence number within the task.
type tev struct {
	task string
	n    int
}

// perTask groups delivered events by task, in delivery order.
func perTask(evs []event) map[string][]int {
	out := map[string][]int{}
	for _, e := range evs {
		v := e.ev.(tev)
		out[v.task] = append(out[v.task], v.n)
	}
	return out
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func (ob *outbox) counters() Counters {
	var c Counters
	ob.fill(&c)
	return c
}

// waitSent waits until the outbox has counted n events as sent: the
// counter moves just after the publisher returns.
func (ob *outbox) waitSent(t *testing.T, n uint64) Counters {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := ob.counters()
		if c.EventsSent >= n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox counted %d sent, want %d", c.EventsSent, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOutboxOrderUnderFailures: with sends failing intermittently, every
// task's events arrive exactly once and in order.
func TestOutboxOrderUnderFailures(t *testing.T) {
	rec := newRecorder()
	rec.fail = func(_ string, _ any, call int) bool { return call%3 == 0 }
	ob := newOutbox(rec, 3)
	const tasks, per = 10, 30
	qs := make([]*queue, tasks)
	for i := range qs {
		qs[i] = ob.newQueue("")
	}
	for n := 0; n < per; n++ {
		for i, q := range qs {
			q.push("/t", tev{fmt.Sprint("t", i), n})
		}
	}
	got := perTask(rec.waitFor(t, tasks*per))
	if len(rec.settle()) != tasks*per {
		t.Fatalf("%d events delivered, want %d", len(rec.snapshot()), tasks*per)
	}
	for i := 0; i < tasks; i++ {
		if name := fmt.Sprint("t", i); !reflect.DeepEqual(got[name], seq(per)) {
			t.Fatalf("task %s got %v, want 0..%d in order, once each", name, got[name], per-1)
		}
	}
	c := ob.waitSent(t, tasks*per)
	if c.EventsQueued != tasks*per || c.EventsSent != tasks*per {
		t.Fatalf("counters %+v", c)
	}
	if c.EventsRetried == 0 {
		t.Fatal("no retry counted though sends failed")
	}
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	if uint64(calls) != c.EventsSent+c.EventsRetried {
		t.Fatalf("%d publish calls, counters say %d sent + %d retried", calls, c.EventsSent, c.EventsRetried)
	}
}

// TestOutboxStuckTaskDoesNotBlockOthers: one worker, task A failing every
// send: task B's events are still delivered, A's retries keep counting,
// and A's events arrive in order once the publisher recovers.
func TestOutboxStuckTaskDoesNotBlockOthers(t *testing.T) {
	rec := newRecorder()
	rec.fail = func(_ string, ev any, _ int) bool { return ev.(tev).task == "A" }
	ob := newOutbox(rec, 1)
	a, b := ob.newQueue(""), ob.newQueue("")
	for n := 0; n < 3; n++ {
		a.push("/t", tev{"A", n})
	}
	for n := 0; n < 20; n++ {
		b.push("/t", tev{"B", n})
	}
	got := perTask(rec.waitFor(t, 20))
	if !reflect.DeepEqual(got["B"], seq(20)) || len(got["A"]) != 0 {
		t.Fatalf("while A fails: delivered %v", got)
	}
	r1 := ob.counters().EventsRetried
	time.Sleep(60 * time.Millisecond)
	c := ob.counters()
	if c.EventsRetried <= r1 {
		t.Fatalf("retry counter stuck at %d: a failing task must keep being retried", r1)
	}
	if c.OldestUnsent < 50*time.Millisecond {
		t.Fatalf("OldestUnsent %v while A's first event waits", c.OldestUnsent)
	}
	// B keeps flowing while A is still stuck.
	b.push("/t", tev{"B", 20})
	got = perTask(rec.waitFor(t, 21))
	if len(got["B"]) != 21 || len(got["A"]) != 0 {
		t.Fatalf("late B event: delivered %v", got)
	}
	rec.setFail(nil)
	got = perTask(rec.waitFor(t, 24))
	if !reflect.DeepEqual(got["A"], seq(3)) {
		t.Fatalf("A after recovery: %v", got["A"])
	}
	if c := ob.waitSent(t, 24); c.OldestUnsent != 0 || c.EventsSent != 24 {
		t.Fatalf("after recovery: %+v", c)
	}
}

// TestOutboxNeverEvicts: an event that fails many more times than the
// stock shim's eviction limit is still delivered, once.
func TestOutboxNeverEvicts(t *testing.T) {
	rec := newRecorder()
	const failures = 30
	rec.fail = func(_ string, _ any, call int) bool { return call <= failures }
	ob := newOutbox(rec, 2)
	q := ob.newQueue("")
	q.push("/t", tev{"X", 0})
	q.push("/t", tev{"X", 1})
	q.close()
	select {
	case <-q.drained:
	case <-time.After(10 * time.Second):
		t.Fatal("queue never drained")
	}
	if got := perTask(rec.settle())["X"]; !reflect.DeepEqual(got, []int{0, 1}) {
		t.Fatalf("delivered %v, want [0 1]", got)
	}
	if c := ob.waitSent(t, 2); c.EventsRetried != failures || c.EventsSent != 2 {
		t.Fatalf("counters %+v, want %d retries and 2 sent", c, failures)
	}
}

// TestOutboxClose: events pushed after close are dropped; drained waits
// for the queued ones.
func TestOutboxClose(t *testing.T) {
	rec := newRecorder()
	release := make(chan struct{})
	rec.fail = func(string, any, int) bool {
		select {
		case <-release:
			return false
		default:
			return true
		}
	}
	ob := newOutbox(rec, 1)
	q := ob.newQueue("")
	q.push("/t", tev{"Q", 0})
	q.close()
	q.push("/t", tev{"Q", 1})
	select {
	case <-q.drained:
		t.Fatal("drained before the queued event was sent")
	case <-time.After(30 * time.Millisecond):
	}
	close(release)
	select {
	case <-q.drained:
	case <-time.After(10 * time.Second):
		t.Fatal("queue never drained")
	}
	if got := perTask(rec.settle())["Q"]; !reflect.DeepEqual(got, []int{0}) {
		t.Fatalf("delivered %v, want [0]", got)
	}
	if c := ob.counters(); c.EventsQueued != 1 {
		t.Fatalf("event pushed after close was queued: %+v", c)
	}
	ob.mu.Lock()
	n := len(ob.queues)
	ob.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d queues kept after drain", n)
	}
}

// TestBackoff: exponential from the base, capped, no overflow.
func TestBackoff(t *testing.T) {
	if defaultBackoffBase <= 0 || defaultBackoffCap < defaultBackoffBase || defaultBackoffCap > time.Minute {
		t.Fatalf("default backoff base %v cap %v", defaultBackoffBase, defaultBackoffCap)
	}
	b, c := backoffBase, backoffCap
	want := map[int]time.Duration{0: b, 1: b, 2: 2 * b, 3: 4 * b, 4: min(8*b, c)}
	for attempt, d := range want {
		if got := backoff(attempt); got != d {
			t.Errorf("backoff(%d) = %v, want %v", attempt, got, d)
		}
	}
	for _, attempt := range []int{10, 64, 1000, 1 << 30} {
		if got := backoff(attempt); got != c {
			t.Errorf("backoff(%d) = %v, want the cap %v", attempt, got, c)
		}
	}
	prev := time.Duration(0)
	for attempt := 1; attempt < 100; attempt++ {
		d := backoff(attempt)
		if d < prev || d > c {
			t.Fatalf("backoff(%d) = %v after %v (cap %v)", attempt, d, prev, c)
		}
		prev = d
	}
}
