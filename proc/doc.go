// Package proc holds containers and their processes: the init and exec
// lifecycle (a transition table, state.go) over go-runc, their stdio
// (fifos, file://, binary:// loggers, ttys; spliced in the kernel), rootfs
// mounts, pidfds received from runc, and the bundle files runc and `shim
// delete` need. A container's cgroup is read through proc/cgroup. It knows
// nothing about ttrpc; exits, their order and their events belong to
// exitmon.
//
// A Process (the init or an exec) keeps its lifecycle state here and its
// exit in exitmon (an exitmon.Exit, in the container's exitmon.Domain).
// Create is given the exit monitor and the container reaches it only
// through that; the one global is go-runc's runc.Monitor, which
// ReapRuncThrough sets once, before any Create.
//
// Concurrency: Container and Process are safe for concurrent use. A
// Container's lock guards its map of execs; a Process's lock guards its
// state, pidfd and stdio. Neither is held across a runc call, and a
// Process's lock is never taken while holding another's.
package proc
