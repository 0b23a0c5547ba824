// Package shim is the binary's side of containerd's shim v2 protocol,
// spoken directly: it uses neither containerd's shim framework (pkg/shim)
// nor its plugin registry.
//
// It owns the binary's actions: parsing the flags containerd passes; start
// (pod grouping, claiming the socket, spawning the server and joining its
// ShimCgroup); delete (cleanup after the server died, answered from the
// node log, the shim's exit journal); -info and -v; and the server itself (child subreaper, log
// fifo, ttrpc with a same-user handshake, the event publisher, the idle
// exit, draining the exit monitor before exit, trimming memory and threads
// after bursts).
//
// Concurrency: Run is called once per process. The server runs one
// exitmon.Monitor and one task.Service for its life; the publisher and the
// idle watch are safe for concurrent use by the service and the exit
// monitor's outbox.
package shim
