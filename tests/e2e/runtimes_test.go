//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// runtime is one row of the scenario tables: a CRI handler and its type.
type runtime struct {
	Handler string // CRI runtime handler name
	Type    string // runtime type for ctr run --runtime
	// CtrOpts are the ctr run flags giving the runtime its options (the
	// crun rows' BinaryName); none by default.
	CtrOpts []string
}

// ctrRun returns the flags of `ctr run` that select rt.
func (rt runtime) ctrRun() []string {
	return append([]string{"--runtime", rt.Type}, rt.CtrOpts...)
}

// runtimes are the rows every scenario runs over.
var runtimes = []runtime{
	{Handler: "runc", Type: harness.RuncRuntime},
	{Handler: "watch", Type: harness.WatchRuntime},
}

// forEach runs fn as a subtest per containerd version and runtime, each
// with its own containerd. Watch rows skip while the shim is not built.
func forEach(t *testing.T, fn func(t *testing.T, c *harness.Containerd, rt runtime)) {
	for _, version := range harness.Versions() {
		for _, rt := range runtimes {
			t.Run(version+"/"+rt.Handler, func(t *testing.T) {
				if rt.Handler == "watch" {
					harness.SkipWithoutWatchShim(t)
				}
				c := harness.Start(t, harness.Options{Version: version})
				fn(t, c, rt)
			})
		}
	}
}

// forEachVersion runs fn as a subtest per containerd version.
func forEachVersion(t *testing.T, fn func(t *testing.T, c *harness.Containerd)) {
	for _, version := range harness.Versions() {
		t.Run(version, func(t *testing.T) {
			fn(t, harness.Start(t, harness.Options{Version: version}))
		})
	}
}

// subscribe returns c's live event stream for the rest of the test.
func subscribe(t *testing.T, c *harness.Containerd) <-chan harness.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return events
}
