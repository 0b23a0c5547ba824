//go:build e2e

// Package harness runs a private containerd (2.2 or 2.4) per test with the
// stock runc shim and the watch shim configured as runtimes, and cleans up
// every process, mount and socket it caused when the test ends.
//
// All state lives in one temporary directory: containerd's root, state,
// sockets, runc root, CRI pod logs, its log file and the stdio fifos of
// ctr calls (FifoDir; never ctr's shared /run/containerd/fifo). Tests need root and the
// binaries that scripts/install-deps.sh builds into .bin/.
//
// StartCluster adds a private single-node Kubernetes cluster on such a
// containerd (k8s*.go): its state lives in the same directory, its pod
// cgroups under a cgroup root named after it, its pods on a bridge named
// after it, so that cleanup and the stale sweep find all of it. It needs
// the Kubernetes binaries scripts/install-deps.sh builds; without them the
// cluster tests skip, or fail under WATCH_E2E_REQUIRE_KUBERNETES=1.
//
// Environment:
//   - WATCH_CONTAINERD_VERSIONS: versions Versions returns ("2.2 2.3 2.4").
//   - WATCH_REPO_ROOT: repository root, when not found from the working dir.
//   - WATCH_E2E_REQUIRE_KUBERNETES=1: a missing Kubernetes binary fails
//     the cluster tests instead of skipping them (`make e2e` sets it).
//
// A test binary killed before its cleanups ran (e.g. by go test -timeout)
// leaves its directory behind; the next Start sweeps such directories whose
// owner process is gone.
package harness
