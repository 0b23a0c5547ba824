//go:build cpuprof

package main

// Built with -tags cpuprof, the shim profiles its CPU in 1-second windows
// and writes cpu-N.pprof after each one to its private directory,
// $TMPDIR/watch-prof-PID-RANDOM (profdir.go): a developer's tool for
// finding what an exit costs. Merge windows with `go tool pprof`.

import (
	"fmt"
	"runtime/pprof"
	"time"
)

func init() {
	go func() {
		dir, err := profileDir()
		if err != nil {
			return
		}
		for n := 0; ; n++ {
			f, err := createProfile(dir, fmt.Sprintf("cpu-%d.pprof", n))
			if err != nil {
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return
			}
			time.Sleep(time.Second)
			pprof.StopCPUProfile()
			f.Close()
		}
	}()
}
