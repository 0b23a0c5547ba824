package shim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// trimMemory returns freed heap pages to the kernel every period in which
// the shim allocated anything. Go's background scavenger does this too, but
// slowly and only down to its heap target; a shim is idle almost all of its
// life, so the memory it holds at rest is what a node pays per pod.
func trimMemory(ctx context.Context, period time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	last := allocated()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if now := allocated(); now != last {
			debug.FreeOSMemory()
			last = allocated()
		}
	}
}
