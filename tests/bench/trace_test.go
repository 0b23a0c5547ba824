//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// eventTimes is one TaskExit of a burst as the subscriber saw it: when the
// process exited (the shim's reaping), when the shim sent the event (its
// envelope timestamp) and when the subscriber received it.
type eventTimes struct {
	id                     string
	exited, sent, received time.Time
}

// writeTrace writes, when BENCH_TRACE=DIR is set, one line per TaskExit of
// the burst to DIR/events-<rt>-<rep>-<prefix>-<release time>.csv: exec id, then exited,
// sent and received in µs after the release. It shows what a percentile
// hides: how the reaping spreads over the burst, and whether the shim's
// sends leave one after another (a serial publisher's round trips) or
// together.
func (b *bencher) writeTrace(prefix string, release time.Time, trace []eventTimes) {
	dir := os.Getenv("BENCH_TRACE")
	if dir == "" || len(trace) == 0 {
		return
	}
	us := func(at time.Time) string {
		if at.IsZero() {
			return ""
		}
		return fmt.Sprint(at.Sub(release).Microseconds())
	}
	var sb strings.Builder
	sb.WriteString("id,exited_us,sent_us,received_us\n")
	for _, e := range trace {
		fmt.Fprintf(&sb, "%s,%s,%s,%s\n", e.id, us(e.exited), us(e.sent), us(e.received))
	}
	name := filepath.Join(dir, fmt.Sprintf("events-%s-%d-%s-%s.csv", b.rt, b.rep, prefix, release.UTC().Format("150405.000")))
	if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
		b.t.Errorf("trace: %v", err)
	}
}

// shimSysCPU returns the stime of pids in ms (own threads, 10 ms ticks):
// the kernel's share of shimCPU.
func shimSysCPU(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		_, st := procTicks(pid)
		ticks += st
	}
	return ticks * 1000 / clockTicks
}
