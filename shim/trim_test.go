package shim

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Blocking syscalls made at once leave threads behind; trimThreads ends
// them and the process goes on working.
func TestTrimThreads(t *testing.T) {
	// As the shim runs (tuneRuntime); a second P keeps a second thread busy.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	before := threadCount()
	if before == 0 {
		t.Skip("no /proc/self/status")
	}
	// Each goroutine blocks its thread in read(2) on a blocking pipe until
	// the write end closes, so they overlap however loaded the machine is
	// (sleeps of a fixed length did not always, and the test then failed).
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b [1]byte
			_, _ = unix.Read(fds[0], b[:]) // blocks its thread until EOF
		}()
	}
	grown := before
	for deadline := time.Now().Add(20 * time.Second); grown < before+8 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		grown = threadCount()
	}
	unix.Close(fds[1])
	wg.Wait()
	if grown < before+8 {
		t.Fatalf("threads: %d before, %d with 12 goroutines blocked in read; the test did not grow them", before, grown)
	}
	trimThreads(restThreads)
	// The main thread may have been parked rather than ended.
	if n := threadCount(); n > restThreads+1 {
		t.Fatalf("threads after trimming to %d: %d (were %d)", restThreads, n, grown)
	}
	done := make(chan struct{})
	go func() {
		ts := unix.NsecToTimespec(int64(time.Millisecond))
		_ = unix.Nanosleep(&ts, nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a goroutine making a blocking syscall did not finish after the trim")
	}
}

func TestTrimDue(t *testing.T) {
	const period = 30 * time.Second
	for _, c := range []struct {
		name      string
		since     uint64
		quietFor  time.Duration
		sinceTrim time.Duration
		want      bool
	}{
		{"busy", 10 << 20, 0, time.Hour, false},
		{"nothing allocated", 0, time.Hour, time.Hour, false},
		{"lull in a burst", 300 << 10, 2 * time.Second, 5 * time.Second, false},
		{"burst ended", 300 << 10, 3 * time.Second, 5 * time.Second, true},
		{"burst ended, long quiet", 300 << 10, time.Minute, time.Minute, true},
		{"lull in a burst, period over", 300 << 10, time.Second, period, false},
		{"at rest, period not over", 100 << 10, time.Minute, 10 * time.Second, false},
		{"at rest, period over", 100 << 10, time.Second, period, true},
		{"busy, period over", 100 << 10, 0, period, false},
	} {
		if got := trimDue(c.since, c.quietFor, c.sinceTrim, period); got != c.want {
			t.Errorf("%s: trimDue = %v, want %v", c.name, got, c.want)
		}
	}
}
