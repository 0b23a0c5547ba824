//go:build memprof

package main

// Built with -tags memprof, the shim records every allocation and writes a
// heap profile to /tmp/watch-heap-PID.pprof and its goroutines to
// /tmp/watch-goroutines-PID.txt every 5 seconds: a developer's
// tool for finding what the per-pod memory is made of.

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

func init() {
	runtime.MemProfileRate = 1
	go func() {
		for range time.Tick(5 * time.Second) {
			runtime.GC()
			f, err := os.Create(fmt.Sprintf("/tmp/watch-heap-%d.pprof", os.Getpid()))
			if err != nil {
				continue
			}
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			if f, err = os.Create(fmt.Sprintf("/tmp/watch-goroutines-%d.txt", os.Getpid())); err == nil {
				_ = pprof.Lookup("goroutine").WriteTo(f, 1)
				f.Close()
			}
		}
	}()
}
