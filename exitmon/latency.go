package exitmon

import "time"

// ExitLatencyBounds are the upper bounds (inclusive) of the buckets of
// Counters.ExitPublished, the time from a process's exit to containerd's
// acknowledgement of its TaskExit. They are fixed so that the histogram is
// an array: recording an exit allocates nothing.
var ExitLatencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute,
}

// Histogram counts durations in the buckets of ExitLatencyBounds.
type Histogram struct {
	// Buckets holds the count of each bucket, not cumulative: Buckets[i]
	// counts durations in (ExitLatencyBounds[i-1], ExitLatencyBounds[i]];
	// the last one those above every bound.
	Buckets [len(ExitLatencyBounds) + 1]uint64 `json:"buckets"`
	Count   uint64                             `json:"count"`
	Sum     time.Duration                      `json:"sum_ns"`
}

// observe adds one duration (a negative one, from a clock step, as 0).
func (h *Histogram) observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(ExitLatencyBounds) && d > ExitLatencyBounds[i] {
		i++
	}
	h.Buckets[i]++
	h.Count++
	h.Sum += d
}

// observeSince adds the time from exited to at, unless exited is zero (the
// event was not a TaskExit).
func (h *Histogram) observeSince(exited, at time.Time) {
	if !exited.IsZero() {
		h.observe(at.Sub(exited))
	}
}

// merge adds o's counts to h.
func (h *Histogram) merge(o *Histogram) {
	for i, n := range o.Buckets {
		h.Buckets[i] += n
	}
	h.Count += o.Count
	h.Sum += o.Sum
}

// exitTime returns when the process behind a TaskExit exited, or the zero
// time for any other event (or an exit read back from a spill file, whose
// event the Codec decoded into its own type).
func exitTime(ev any) time.Time {
	if e, ok := ev.(ExitEvent); ok {
		return e.Status.ExitedAt
	}
	return time.Time{}
}
