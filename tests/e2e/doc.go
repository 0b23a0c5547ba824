//go:build e2e

// Package e2e holds the end-to-end tests of the watch shim against real
// containerd 2.2 and 2.4 instances started by tests/harness.
package e2e
