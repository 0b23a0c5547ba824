//go:build e2e

package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// runner stands in for the testing.TB the harness is written for, so a
// program can use it: Fatal and Skip end the demo after its cleanups (exit
// 1); Errorf marks it failed. The embedded TB is nil and only satisfies
// the interface: the harness calls nothing but the methods below.
type runner struct {
	testing.TB

	mu          sync.Mutex
	cleanups    []func()
	failed      bool
	interrupted atomic.Bool // set on SIGINT/SIGTERM, when the harness cleans up itself
}

func (r *runner) Helper() {}

// Cleanup registers f to run, last registered first, when the demo ends.
func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	r.Logf(format, args...)
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *runner) Fatalf(format string, args ...any) {
	if !r.interrupted.Load() {
		r.Errorf("\nwatch-demo: "+format, args...)
	}
	r.exit()
}

func (r *runner) Skip(args ...any) { r.Fatal(args...) }

func (r *runner) Skipf(format string, args ...any) { r.Fatalf(format, args...) }

// runCleanups runs the registered cleanups once. The harness's cleanup
// waits for one already under way (the signal handler's), so the demo
// never exits while containerd or a shim of its own is still alive.
func (r *runner) runCleanups() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// exit ends the demo after its cleanups: status 0, or 1 when it failed.
// After Ctrl-C it leaves the exit to the harness's signal handler, whose
// cleanup runCleanups has waited for (it exits 2).
func (r *runner) exit() {
	r.runCleanups()
	if r.interrupted.Load() {
		select {}
	}
	if r.Failed() {
		os.Exit(1)
	}
	os.Exit(0)
}
