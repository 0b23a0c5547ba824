package shim

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIdle is a task service whose idleness the test sets.
type fakeIdle struct {
	mu    sync.Mutex
	since time.Time
	idle  bool
}

func (f *fakeIdle) IdleSince() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.since, f.idle
}

func (f *fakeIdle) set(idle bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idle, f.since = idle, time.Now()
}

const testGrace = 100 * time.Millisecond

func exitCounter() (*atomic.Int32, func()) {
	var n atomic.Int32
	return &n, func() { n.Add(1) }
}

// A server that never gets a task exits after the grace.
func TestIdleExitsWithoutTask(t *testing.T) {
	src := &fakeIdle{since: time.Now(), idle: true}
	n, exit := exitCounter()
	w := watchIdle(src, testGrace, exit)
	defer w.Stop()
	time.Sleep(testGrace / 2)
	if n.Load() != 0 {
		t.Fatal("exited before the grace was over")
	}
	waitFor(t, func() bool { return n.Load() == 1 })
}

// A server serving a task never exits, however long it waits.
func TestIdleStaysWhileServing(t *testing.T) {
	src := &fakeIdle{}
	n, exit := exitCounter()
	w := watchIdle(src, testGrace, exit)
	defer w.Stop()
	time.Sleep(4 * testGrace)
	if n.Load() != 0 {
		t.Fatal("exited while serving a task")
	}
	// Left idle and armed by the service, it exits a grace later.
	src.set(true)
	w.Arm()
	waitFor(t, func() bool { return n.Load() == 1 })
}

// Becoming idle late in a grace restarts the count from that moment.
func TestIdleCountsFromLastIdle(t *testing.T) {
	src := &fakeIdle{}
	exited := make(chan time.Time, 1)
	w := watchIdle(src, testGrace, func() { exited <- time.Now() })
	defer w.Stop()
	time.Sleep(testGrace * 3 / 4)
	src.set(true) // the timer fires in a quarter grace, finds it idle too briefly
	idleAt := time.Now()
	select {
	case at := <-exited:
		// Timers fire late on a busy machine, never early: an exit less
		// than a grace after the idle began is the bug, a late one is not.
		if d := at.Sub(idleAt); d < testGrace {
			t.Fatalf("exited %v after becoming idle, less than a grace (%v)", d, testGrace)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5s of becoming idle")
	}
}

// A stopped watch never exits, even when armed again.
func TestIdleStop(t *testing.T) {
	src := &fakeIdle{since: time.Now(), idle: true}
	n, exit := exitCounter()
	w := watchIdle(src, testGrace, exit)
	w.Stop()
	w.Arm()
	time.Sleep(3 * testGrace)
	if n.Load() != 0 {
		t.Fatal("a stopped watch exited")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
