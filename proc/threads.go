package proc

import "sync"

// runcThreads keeps alive the OS threads that started runc processes.
//
// runc runs with a parent-death signal (SIGKILL): the kernel sends it when
// the thread that forked runc ends, not the process. go-runc asks for the
// starting goroutine to be locked to its thread until runc exits, which
// parks that thread for runc's whole run and makes the scheduler hand the
// shim's one P to other threads and back around it, several context
// switches per runc invocation. The lock is not needed: the Go runtime ends
// a thread only when a goroutine locked to it returns, and the one place
// the shim does that on purpose (shim's thread trim) first stops runc
// launches with StopRuncLaunches and gives up when one is in flight.
//
// Readers are runc processes in flight (held from before the fork until
// their exit is known); the writer is a thread trim.
var runcThreads sync.RWMutex

// StopRuncLaunches reports whether no runc process is in flight and, if
// so, holds off new ones until resume is called. It never waits.
func StopRuncLaunches() (resume func(), ok bool) {
	if !runcThreads.TryLock() {
		return nil, false
	}
	return runcThreads.Unlock, true
}
