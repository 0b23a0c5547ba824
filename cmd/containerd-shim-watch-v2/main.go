// Command containerd-shim-watch-v2 is the containerd shim v2 runtime
// io.containerd.watch.v2: one shim per pod, runc underneath, and an exit
// monitor that never loses, reorders or misreports an exit.
//
// containerd runs it with flags and an action (start, delete), or -info or
// -v; people run its commands (counters, stacks, help), which come first on
// the command line, where containerd always writes a flag.
package main

import (
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
	if len(os.Args) > 1 {
		if os.Args[1] == "help" {
			os.Exit(help(os.Args[2:]))
		}
		if c := lookup(os.Args[1]); c != nil {
			os.Exit(c.main(os.Args[2:]))
		}
	}
	task.Version = version
	os.Exit(shim.Run(version, revision, usage))
}
