package exitmon

import (
	"context"
	"fmt"
	"reflect"
	"sync"
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

// flightPub is a Publisher that records delivery order and how many sends
// were in flight at once. The first send of an event waits (up to 2 s)
// until holdFor(n) sends have been in flight at once, so a run that is really sent
// concurrently is seen whole; a barrier's send notes whether anything else was in
// flight beside it.
type flightPub struct {
	mu         sync.Mutex
	inFlight   int
	maxFlight  int
	overlapped []int // barriers sent while another send was in flight
	delivered  []int
	failOnce   map[int]bool
	holdFor    func(n int) int
	tried      map[int]bool
	gate       chan struct{} // event 0's send waits for it: the queue fills first
}

func (p *flightPub) Publish(_ context.Context, topic string, ev any) error {
	n := ev.(tev).n
	if n == 0 {
		<-p.gate
	}
	free := topic == "/free"
	p.mu.Lock()
	p.inFlight++
	p.maxFlight = max(p.maxFlight, p.inFlight)
	if !free && p.inFlight > 1 {
		p.overlapped = append(p.overlapped, n)
	}
	hold := 0
	if free && !p.tried[n] {
		hold = p.holdFor(n)
	}
	p.tried[n] = true
	p.mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for hold > 0 && time.Now().Before(deadline) {
		p.mu.Lock()
		enough := p.maxFlight >= hold
		p.mu.Unlock()
		if enough {
			// Stay in flight a little longer: sends beyond a cap would
			// pile up on top of this run now.
			time.Sleep(20 * time.Millisecond)
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if p.failOnce[n] {
		delete(p.failOnce, n)
		return fmt.Errorf("injected failure of %d", n)
	}
	p.delivered = append(p.delivered, n)
	return nil
}

func (p *flightPub) snapshot() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.delivered...)
}

// TestOutboxFreeRunsAreConcurrent: a run of free events (exec exits) is
// sent concurrently, at most maxInFlight at a time; barriers are sent
// alone, after every event queued before them and before every event
// queued after them, also when some free sends fail and are retried.
func TestOutboxFreeRunsAreConcurrent(t *testing.T) {
	pub := &flightPub{failOnce: map[int]bool{5: true, 7: true, 90: true}, tried: map[int]bool{},
		gate: make(chan struct{}),
		holdFor: func(n int) int {
			switch {
			case n <= 20:
				return 20 // the first run, whole
			case n < 22+maxInFlight:
				return maxInFlight // the second run's first batch
			}
			return 0
		}}
	ob := newOutbox(pub, 2)
	q := ob.newQueue("")
	// 0: barrier; 1..20 free; 21: barrier; 22..121 free (100, more than
	// maxInFlight); 122: barrier.
	q.push("/barrier", tev{"T", 0})
	for n := 1; n <= 20; n++ {
		q.pushFree("/free", tev{"T", n})
	}
	q.push("/barrier", tev{"T", 21})
	for n := 22; n <= 121; n++ {
		q.pushFree("/free", tev{"T", n})
	}
	q.push("/barrier", tev{"T", 122})
	q.close()
	close(pub.gate)
	select {
	case <-q.drained:
	case <-time.After(20 * time.Second):
		t.Fatalf("queue not drained; delivered %v", pub.snapshot())
	}
	got := pub.snapshot()
	if len(got) != 123 {
		t.Fatalf("delivered %d events, want 123 once each: %v", len(got), got)
	}
	pos := map[int]int{}
	for i, n := range got {
		if _, dup := pos[n]; dup {
			t.Fatalf("event %d delivered twice: %v", n, got)
		}
		pos[n] = i
	}
	for n := 1; n <= 121; n++ {
		if n == 21 {
			continue
		}
		lo, hi := 0, 21
		if n > 21 {
			lo, hi = 21, 122
		}
		if pos[n] < pos[lo] || pos[n] > pos[hi] {
			t.Fatalf("free event %d delivered outside its barriers %d..%d: %v", n, lo, hi, got)
		}
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.overlapped) > 0 {
		t.Fatalf("barriers %v were sent while other sends were in flight", pub.overlapped)
	}
	if pub.maxFlight < 20 {
		t.Fatalf("at most %d sends in flight: free runs are not sent concurrently", pub.maxFlight)
	}
	if pub.maxFlight > maxInFlight {
		t.Fatalf("%d sends in flight, cap is %d", pub.maxFlight, maxInFlight)
	}
	if c := ob.counters(); c.EventsSent != 123 || c.EventsRetried != 3 {
		t.Fatalf("counters %+v, want 123 sent and 3 retried", c)
	}
}

// TestOutboxWorkersOnDemand: no worker runs before there is an event or
// after all are sent, and never more than the bound while sends hang.
func TestOutboxWorkersOnDemand(t *testing.T) {
	block := make(chan struct{})
	var mu sync.Mutex
	inFlight, peak := 0, 0
	pub := publisherFunc(func(ctx context.Context, topic string, ev any) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		<-block
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	})
	ob := newOutbox(pub, 2)
	running := func() int {
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return ob.running
	}
	if n := running(); n != 0 {
		t.Fatalf("%d workers before any event", n)
	}
	for i := 0; i < 5; i++ {
		ob.newQueue("").push("/t", tev{fmt.Sprint("t", i), 0})
	}
	time.Sleep(50 * time.Millisecond)
	if n := running(); n != 2 {
		t.Fatalf("%d workers with 5 queues ready, want the bound 2", n)
	}
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for ob.pending() > 0 || running() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, workers %d after all sends returned", ob.pending(), running())
		}
		time.Sleep(time.Millisecond)
	}
	if peak > 2 {
		t.Fatalf("%d sends in flight at once, bound 2", peak)
	}
}

type publisherFunc func(ctx context.Context, topic string, ev any) error

func (f publisherFunc) Publish(ctx context.Context, topic string, ev any) error {
	return f(ctx, topic, ev)
}
