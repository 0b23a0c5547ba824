// Package exitmon is the shim's exit monitor: it reaps every child and
// orphan of the shim, matches exits to the processes the shim tracks (even
// exits that happen before the caller learned the pid), writes every exit to
// the node log (nodelog, the shim's exit journal) before anyone is told,
// releases Wait callers and feeds an ordered,
// never-evicting event outbox.
//
// Names: Monitor is the one reaper per shim. A Domain is one container's
// exit domain (a task, in containerd's words): its records in the node log,
// its event queue and the order of its events (Create < Start < Exit < Delete, every
// exec's exit before the init's, nothing after Delete). An Exit is the exit
// side of one process of a Domain; Status is how a process ended.
//
// exitmon knows nothing about runc, cgroups or ttrpc: callers hand it pids,
// pidfds, a Publisher and, for OOM, a check to run at init exit
// (Domain.SetOOMCheck).
//
// Concurrency: Monitor, Domain and Exit are safe for concurrent use. Run
// must be running for exits to be seen; every token from Begin ends in
// Exit.Watch or Cancel. Watchers run concurrently, so ordering is the
// Domain's job, kept under its lock; the outbox delivers each Domain's
// events in that order, Domains side by side.
package exitmon
