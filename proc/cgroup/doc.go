// Package cgroup is a container's cgroup, v1 or v2: finding it from a pid
// (Load), its statistics encoded natively as containerd's
// io.containerd.cgroups.v1/v2.Metrics (Stats, without cgroups/v3), and the
// memory controller's OOM kill counter (OOMKilled). Unified and Root tell
// the rest of the shim which hierarchy the node mounts and where.
//
// It is a leaf: it imports none of the shim's other packages. It only
// reads cgroupfs and /proc; it never creates, moves or limits a cgroup
// (runc does, and the shim joins its own ShimCgroup in package shim).
//
// Concurrency: a Group's methods are safe for concurrent use; Stats
// reuses one buffer per Group under a lock.
package cgroup
