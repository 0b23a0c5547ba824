// Command containerd-shim-watch-v2 is the containerd shim v2 runtime
// io.containerd.watch.v2: one shim per pod, runc underneath, and an exit
// monitor that never loses, reorders or misreports an exit.
package main

import (
	"fmt"
	"os"

	"github.com/watchshim/containerd-shim-watch-v2/shim"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// Set with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

func main() {
	if len(os.Args) == 3 && (os.Args[1] == "counters" || os.Args[1] == "stacks") {
		if err := inspect(os.Args[1], os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	task.Version = version
	os.Exit(shim.Run(version, revision))
}
