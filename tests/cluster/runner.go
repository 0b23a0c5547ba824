//go:build e2e

package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// runner stands in for the testing.TB the harness is written for: Fatal
// and Skip end the program after its cleanups (exit 1). The embedded TB is
// nil and only satisfies the interface: the harness calls nothing but the
// methods below.
type runner struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (r *runner) Helper() {}

// Cleanup registers f to run, last registered first, when the program ends.
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
	r.Errorf("watch-cluster: "+format, args...)
	r.runCleanups()
	os.Exit(1)
}

func (r *runner) Skip(args ...any) { r.Fatal(args...) }

func (r *runner) Skipf(format string, args ...any) { r.Fatalf(format, args...) }

func (r *runner) runCleanups() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
