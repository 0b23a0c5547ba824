// Package nodemetrics is the node's Prometheus metrics of
// containerd-shim-watch-v2: what the node lifecycle log says about every
// container (last termination, exits by reason and code), what each running
// watch shim says about its event outbox (queued, sent, retried, oldest
// unsent, exit → published latency) and the log's own size.
//
// A Collector reads everything at scrape time: it follows the log from its
// last cursor up to the log's current end, asks each shim for its counters
// over the shim's socket, and keeps no goroutine. It lives in a node
// component (the installer's `run` and `metrics` commands), never in the
// per-pod shim process.
//
// # Shim discovery
//
// The shims of a node are found in /proc: every process whose executable
// is named containerd-shim-watch-v2 (also after an upgrade replaced the
// file: " (deleted)") and that has $WATCH_SHIM_SOCKET in its environment,
// which only a shim server has (not `start`, `delete` or a CLI command).
// Only shims writing the Collector's log are kept ($WATCH_NODE_LOG_DIR, or
// the default directory): on a node with a test containerd beside the real
// one, each log's component sees its own shims. /proc is the kernel's list
// of what runs: a socket file outlives a SIGKILLed shim, a pid file or
// containerd's bundle list lags it. In a pod this needs hostPID.
//
// # Cardinality
//
// Container series are keyed by the pod's uid (or, without one, the
// containerd namespace and container id). They disappear once the pod's
// sandbox (or the container, outside a pod) has been deleted for longer than
// Options.Retention (the log's retention by default), and shim series when
// the shim process is gone.
package nodemetrics
