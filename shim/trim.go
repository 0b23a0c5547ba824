package shim

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/proc"
)

// restThreads is how many OS threads a shim at rest keeps: sysmon, the
// template thread that LockOSThread users need, one to run goroutines, and
// the main thread, which cannot end (if a trim round lands on it, it is
// parked for good). This is reachable only because the shim never calls
// signal.Notify, which would hold two more for life (see exitmon's waker).
const restThreads = 4

// trimMemory returns freed heap pages (and idle threads) to the kernel once
// the shim has gone quiet after allocating: a few seconds after a burst of
// work (pod start, an exec storm) has ended, and every period at rest. Go's
// background scavenger does this too, but slowly and only down to its heap
// target; a shim is idle almost all of its life, so the memory it holds at
// rest is what a node pays per pod.
func trimMemory(ctx context.Context, period time.Duration) {
	const (
		tick  = time.Second
		quiet = 64 << 10 // allocated in a tick: still busy above this
	)
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	prev := allocated()
	lastTrim, trimmedAt := prev, time.Now()
	var quietFor time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := allocated()
		if now-prev > quiet {
			quietFor = 0
		} else {
			quietFor += tick
		}
		prev = now
		if !trimDue(now-lastTrim, quietFor, time.Since(trimmedAt), period) {
			continue
		}
		// A thread that started a runc still running must not end: runc
		// would get its parent-death signal. Trim threads another time.
		if resume, ok := proc.StopRuncLaunches(); ok {
			trimThreads(restThreads)
			resume()
		}
		debug.FreeOSMemory()
		prev = allocated()
		lastTrim, trimmedAt = prev, time.Now()
	}
}

// trimDue decides a trim from the bytes allocated since the last trim
// (since), how long the shim has been quiet, and the time since the last
// trim.
//
// A burst is trimmed only after settle quiet seconds: a lull inside one (an
// exec storm set up and waiting for its release, say) would pay a full GC
// over the burst's live goroutines and end the threads the burst needs
// again a moment later, for little memory back.
func trimDue(since uint64, quietFor, sinceTrim, period time.Duration) bool {
	const (
		burst  = 256 << 10 // allocated since the last trim: worth trimming soon
		settle = 3 * time.Second
	)
	switch {
	case quietFor == 0 || since == 0:
		return false // busy, or nothing to give back
	case since >= burst:
		return quietFor >= settle // a burst has ended, or has not
	default:
		return sinceTrim >= period // at rest: every period
	}
}

// trimThreads ends idle OS threads beyond keep. Go keeps every thread it
// ever started: one per syscall that blocked while others ran, so a burst
// of runc invocations leaves a shim with threads it never needs again, each
// holding its g0 and signal stacks. A goroutine that exits while
// locked to its thread takes the thread with it; the scheduler moves on to
// an idle one. Which thread ends is not ours to choose: call it only while
// proc.StopRuncLaunches holds, so that no thread that started a runc still
// running is among them.
func trimThreads(keep int) {
	// Each round ends one thread, except when it lands on the main thread,
	// which cannot end (it is parked instead and still counts): give up
	// after 2n rounds.
	n := threadCount()
	for tries := 0; n > keep && tries < 2*n; tries++ {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
			// Return without UnlockOSThread: the thread exits.
		}()
		<-done
		time.Sleep(time.Millisecond) // let the thread finish exiting
		n = threadCount()
	}
}

// threadCount returns the number of threads of this process.
func threadCount() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("\nThreads:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	n, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil {
		return 0
	}
	return n
}
