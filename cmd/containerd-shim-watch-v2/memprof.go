//go:build memprof

package main

// Built with -tags memprof, the shim records every allocation and every 5
// seconds replaces heap.pprof (a heap profile) and goroutines.txt in its
// private directory, $TMPDIR/watch-prof-PID-RANDOM (profdir.go): a
// developer's tool for finding what the per-pod memory is made of.

import (
	"io"
	"runtime"
	"runtime/pprof"
	"time"
)

func init() {
	runtime.MemProfileRate = 1
	go func() {
		dir, err := profileDir()
		if err != nil {
			return
		}
		for range time.Tick(5 * time.Second) {
			runtime.GC()
			_ = replaceProfile(dir, "heap.pprof", func(w io.Writer) error {
				return pprof.Lookup("heap").WriteTo(w, 0)
			})
			_ = replaceProfile(dir, "goroutines.txt", func(w io.Writer) error {
				return pprof.Lookup("goroutine").WriteTo(w, 1)
			})
		}
	}()
}
