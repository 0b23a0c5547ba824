package installer

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
)

// Defaults of Options: where containerd and its shims live on a stock node.
const (
	DefaultInstallDir = "/usr/local/bin"
	DefaultConfig     = "/etc/containerd/config.toml"
	DefaultConfDir    = "/etc/containerd/conf.d"
	DefaultStateDir   = "/run/containerd"
)

// Names of what the installer owns on the host.
const (
	// ShimName is the shim binary's name; containerd derives it from the
	// runtime type io.containerd.watch.v2.
	ShimName = "containerd-shim-watch-v2"
	// RuntimeType is the runtime type registered for handler RuntimeName.
	RuntimeType = "io.containerd.watch.v2"
	// RuntimeName is the CRI runtime handler, the RuntimeClass' handler.
	RuntimeName = "watch"
	// DropInName is the drop-in file's name in the conf.d directory.
	DropInName = "containerd-shim-watch.toml"
	// BackupSuffix is appended to the main config's path for its backup.
	BackupSuffix = ".watch-installer.bak"
	// pendingName marks, in the conf.d directory, a configuration change
	// containerd has not been restarted for yet (the restart failed or
	// the installer died): the next Install restarts even if no file
	// changes.
	pendingName = "containerd-shim-watch.restart-pending"
)

// ErrOptions is returned, wrapped, for Options the installer refuses.
var ErrOptions = errors.New("installer: bad options")

// Options say where things are. Paths other than HostRoot and Shim are
// host paths, as containerd sees them.
type Options struct {
	// HostRoot is where the host's filesystem is mounted in the
	// installer's ("" or "/": the installer runs on the host).
	HostRoot string
	// Shim is the shim binary to install, in the installer's filesystem.
	Shim string
	// InstallDir is the host directory the shim is installed into.
	InstallDir string
	// Config is containerd's main config file.
	Config string
	// ConfDir is the directory of the drop-in file.
	ConfDir string
	// StateDir is containerd's state directory (its task bundles).
	StateDir string
	// Restart restarts containerd after a configuration change.
	Restart Restarter
	// Log receives one line per action; nil: discarded.
	Log io.Writer
}

// withDefaults fills the empty fields with the defaults.
func (o Options) withDefaults() Options {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.InstallDir, DefaultInstallDir)
	def(&o.Config, DefaultConfig)
	def(&o.ConfDir, DefaultConfDir)
	def(&o.StateDir, DefaultStateDir)
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Restart == nil {
		o.Restart = NoRestart{}
	}
	return o
}

// validate refuses host paths that are not absolute: containerd reads a
// relative runtime_path or import entry relative to something else than
// the installer does.
func (o Options) validate() error {
	for _, p := range []struct{ flag, path string }{
		{"install dir", o.InstallDir}, {"config", o.Config}, {"conf dir", o.ConfDir}, {"state dir", o.StateDir},
	} {
		if !filepath.IsAbs(p.path) {
			return fmt.Errorf("%w: %s %q is not an absolute host path", ErrOptions, p.flag, p.path)
		}
	}
	return nil
}

// host returns where host path p is in the installer's filesystem.
func (o Options) host(p string) string {
	if o.HostRoot == "" {
		return p
	}
	return filepath.Join(o.HostRoot, p)
}

// ShimPath is the installed shim's host path (runtime_path).
func (o Options) ShimPath() string { return filepath.Join(o.InstallDir, ShimName) }

// DropInPath is the drop-in file's host path.
func (o Options) DropInPath() string { return filepath.Join(o.ConfDir, DropInName) }
