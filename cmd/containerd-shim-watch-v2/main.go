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
