// Package task serves containerd's TaskService (task v3) over ttrpc for
// every container of a pod, and the shim's inspect endpoint (counters and
// stacks) beside it on the same server.
//
// It validates requests, maps errdefs errors to ttrpc status codes (the
// only place errors change form) and calls into proc; it holds no
// lifecycle logic of its own. Events are published by exitmon's ordered
// outbox, not here.
//
// Concurrency: Service is safe for concurrent use. Its lock guards the map
// of containers, the Creates in flight and the decision to exit when idle;
// runc calls run outside it, so a slow call for one task never holds a
// lock another task needs.
package task
