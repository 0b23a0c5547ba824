// Command containerd-shim-watch-v2 is the containerd shim v2 runtime
// io.containerd.watch.v2: one shim per pod, runc underneath, and an exit
// monitor that never loses, reorders or misreports an exit.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	shimpkg "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/watchshim/containerd-shim-watch-v2/shim"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// Set with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Printf("%s:\n  Version:  %s\n  Revision: %s\n  Go version: %s\n",
			filepath.Base(os.Args[0]), version, revision, runtime.Version())
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "counters" {
		if err := printCounters(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "counters:", err)
			os.Exit(1)
		}
		return
	}
	task.Version = version
	shim.Register()
	shimpkg.Run(context.Background(), &shim.Manager{Version: version, Revision: revision}, func(c *shimpkg.Config) {
		// The exit monitor is the only reaper.
		c.NoReaper = true
	})
}
