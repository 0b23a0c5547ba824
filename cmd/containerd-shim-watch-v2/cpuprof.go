//go:build cpuprof

package main

// Built with -tags cpuprof, the shim profiles its CPU in 1-second windows
// and writes /tmp/watch-cpu-PID-N.pprof after each one: a developer's tool
// for finding what an exit costs. Merge windows with `go tool pprof`.

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

func init() {
	go func() {
		for n := 0; ; n++ {
			f, err := os.Create(fmt.Sprintf("/tmp/watch-cpu-%d-%d.pprof", os.Getpid(), n))
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
