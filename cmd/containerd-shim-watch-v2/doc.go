// Command containerd-shim-watch-v2 is the containerd shim v2 runtime
// io.containerd.watch.v2: one shim per pod, runc underneath, and an exit
// monitor that never loses, reorders or misreports an exit.
//
// containerd runs it with flags and an action (start, delete), or -info or
// -v; people run its commands (counters, stacks, help), which come first on
// the command line, where containerd always writes a flag. Everything but
// those commands is handed to shim.Run. The commands are clients of a
// running shim's inspect endpoint (task.InspectService) on its socket.
package main
