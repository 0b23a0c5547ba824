// Package installer installs the watch shim on a Kubernetes node and
// removes it again: it is the logic of containerd-shim-watch-installer,
// the process the deploy/ DaemonSet runs on every node.
//
// Install copies the shim binary onto the host atomically (a temp file in
// the same directory, fsync, rename: running shims keep their inode),
// registers runtime "watch" in a drop-in file in containerd's conf.d,
// makes sure containerd's main config imports that file exactly once, and
// restarts containerd when (and only when) its configuration changed.
// Every step compares before it writes: a second Install leaves every file
// byte-identical and restarts nothing.
//
// The main config is edited, never regenerated: the TOML library's parser
// locates the top-level imports array, only that value is replaced (or one
// line added after `version`), and the result is parsed again and must
// equal the old document with exactly that change, else nothing is
// written. Comments and layout of the operator's file survive. A config
// that does not parse is refused with nothing changed.
//
// Uninstall (after the caller removed the node label, so that no new pod
// lands on the runtime) removes the import (restoring the backup byte for
// byte when the config is still what Install made of it), the drop-in and
// the binary, and restarts containerd. While a task bundle in containerd's
// state directory names the binary it changes nothing: containerd runs
// that binary for `shim delete` of every such task, and its CRI plugin
// refuses exec into a pod whose runtime handler is no longer configured.
//
// Rewritten files keep the identity of the file they replace (mode,
// owner, SELinux label and ACL; identity.go); directories the installer
// creates are 0755 and root's.
//
// Check reports whether the installation is intact without changing
// anything; KeepLabel, run by `run`, uses it to keep the node label in
// step: set again while the installation is intact, removed (never
// re-installed) when it is not, left off once RequestUninstall recorded
// an uninstall.
//
// The install directory must be on containerd's PATH (/usr/local/bin is):
// runtime_path serves new shims, but when containerd restarts it reloads a
// container grouped into its pod's shim by the runtime type's binary name.
//
// All paths in Options are host paths, as containerd sees them; the
// installer reaches them under HostRoot (where the DaemonSet mounts them).
package installer
