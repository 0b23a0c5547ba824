package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Result says what Install or Uninstall changed on the host.
type Result struct {
	Binary, DropIn, Config bool // written (Install) or removed/restored (Uninstall)
	Restarted              bool // containerd was restarted
	// InUse lists the task bundles ("namespace/id") that kept Uninstall
	// from removing the binary.
	InUse []string
}

// Install installs the shim and registers runtime watch, restarting
// containerd only when its configuration changed (or a previous change
// was never followed by a restart). It reads and checks everything before
// it writes anything: a config it refuses leaves every file unchanged.
// A successful Install forgets an earlier RequestUninstall.
func Install(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	var r Result
	if err := o.validate(); err != nil {
		return r, err
	}
	unlock, err := o.lockHost()
	if err != nil {
		return r, err
	}
	defer unlock()
	shim, err := os.ReadFile(o.Shim)
	if err != nil {
		return r, fmt.Errorf("read shim: %w", err)
	}
	cfg, err := o.readConfig()
	if err != nil {
		return r, err
	}
	dropIn, err := cfg.dropIn(o.ShimPath())
	if err != nil {
		return r, err
	}
	newConfig, err := cfg.withImport(o.DropInPath())
	if err != nil {
		return r, err
	}
	for _, d := range []string{o.InstallDir, o.ConfDir} {
		if err := o.ensureDir(d); err != nil {
			return r, err
		}
	}
	changes, err := differs(o.host(o.DropInPath()), dropIn, 0o644)
	if err != nil {
		return r, fmt.Errorf("drop-in: %w", err)
	}
	if err := o.markPendingIf(changes || !bytes.Equal(cfg.data, newConfig)); err != nil {
		return r, err
	}
	if r.Binary, err = writeIfChanged(o.host(o.ShimPath()), shim, 0o755); err != nil {
		return r, fmt.Errorf("install shim: %w", err)
	}
	logIf(o, r.Binary, "installed %s", o.ShimPath())
	if r.DropIn, err = writeIfChanged(o.host(o.DropInPath()), dropIn, 0o644); err != nil {
		return r, fmt.Errorf("write drop-in: %w", err)
	}
	logIf(o, r.DropIn, "wrote %s", o.DropInPath())
	if r.Config, err = o.writeConfig(cfg, newConfig); err != nil {
		return r, err
	}
	logIf(o, r.Config, "added %s to the imports of %s (backup %s)", o.DropInPath(), o.Config, o.Config+BackupSuffix)
	if r.Restarted, err = o.restartIfChanged(ctx, r.DropIn || r.Config); err != nil {
		return r, err
	}
	return r, o.forgetUninstall()
}

// writeConfig replaces the main config with data when it differs,
// keeping a backup of what it held. Both files keep the config's
// identity (mode, owner, SELinux label): a 0600 config holding registry
// credentials must not get a world-readable backup, and a confined
// containerd must still be allowed to read its config.
func (o Options) writeConfig(cfg *mainConfig, data []byte) (bool, error) {
	if bytes.Equal(cfg.data, data) {
		return false, nil
	}
	id, err := identityOf(cfg.file)
	if err != nil {
		return false, fmt.Errorf("config %s: %w", o.Config, err)
	}
	if err := writeAtomic(o.host(o.Config)+BackupSuffix, cfg.data, id); err != nil {
		return false, fmt.Errorf("back up %s: %w", o.Config, err)
	}
	if err := writeAtomic(cfg.file, data, id); err != nil {
		return false, fmt.Errorf("write %s: %w", o.Config, err)
	}
	return true, nil
}

// markPendingIf writes the restart marker when the configuration is about
// to change, before it changes: an installer that dies between the change
// and containerd's restart leaves the marker, and the next run restarts.
func (o Options) markPendingIf(change bool) error {
	if !change {
		return nil
	}
	if err := writeAtomic(o.host(filepath.Join(o.ConfDir, pendingName)), nil, modeOnly(0o644)); err != nil {
		return fmt.Errorf("mark restart pending: %w", err)
	}
	return nil
}

// hasDropIn reports whether the drop-in file exists (or cannot be told
// not to).
func (o Options) hasDropIn() bool {
	_, err := os.Lstat(o.host(o.DropInPath()))
	return !errors.Is(err, fs.ErrNotExist)
}

// restartIfChanged restarts containerd when changed or when a marker says
// an earlier change is still waiting for its restart. The marker is
// written before the restart and removed after it succeeded.
func (o Options) restartIfChanged(ctx context.Context, changed bool) (bool, error) {
	marker := o.host(filepath.Join(o.ConfDir, pendingName))
	if !changed {
		if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
	}
	if err := o.markPendingIf(true); err != nil {
		return false, err
	}
	fmt.Fprintf(o.Log, "restarting containerd (%s)\n", o.Restart)
	if err := o.Restart.Restart(ctx); err != nil {
		return false, fmt.Errorf("restart containerd: %w", err)
	}
	if _, err := removeIfExists(marker); err != nil {
		return true, err
	}
	return true, nil
}

// Uninstall undoes Install: the import goes from the main config (the
// backup is restored byte for byte when the config is still exactly what
// Install made of it), the drop-in and the binary go, and containerd
// restarts. The node label is the caller's to remove first, so that no
// new pod is scheduled onto the runtime.
//
// While a task bundle names the binary (Result.InUse), Uninstall changes
// nothing on the host: containerd runs that binary for `shim delete` of
// every such task, and its CRI plugin refuses exec into, and restarts of
// containers of, a pod whose runtime handler is no longer configured.
// force removes the registration anyway (those pods then only run on and
// can be deleted) and still keeps the binary. A config it cannot parse is
// refused with nothing changed.
func Uninstall(ctx context.Context, o Options, force bool) (Result, error) {
	o = o.withDefaults()
	var r Result
	if err := o.validate(); err != nil {
		return r, err
	}
	unlock, err := o.lockHost()
	if err != nil {
		return r, err
	}
	defer unlock()
	cfg, err := o.readConfig()
	if err != nil {
		return r, err
	}
	if r.InUse, err = o.tasksUsing(o.ShimPath()); err != nil {
		return r, fmt.Errorf("find tasks of %s: %w", o.ShimPath(), err)
	}
	if len(r.InUse) > 0 && !force {
		fmt.Fprintf(o.Log, "%d task(s) still use %s (%v): runtime %s left installed; uninstall again once they are gone\n", len(r.InUse), o.ShimPath(), r.InUse, RuntimeName)
		return r, nil
	}
	restored, err := o.restoredConfig(cfg)
	if err != nil {
		return r, err
	}
	if err := o.markPendingIf(!bytes.Equal(cfg.data, restored) || o.hasDropIn()); err != nil {
		return r, err
	}
	if r.Config, err = o.replaceConfig(cfg, restored); err != nil {
		return r, err
	}
	logIf(o, r.Config, "removed %s from the imports of %s", o.DropInPath(), o.Config)
	if r.DropIn, err = removeIfExists(o.host(o.DropInPath())); err != nil {
		return r, err
	}
	logIf(o, r.DropIn, "removed %s", o.DropInPath())
	if err := o.forgetUninstall(); err != nil {
		return r, err
	}
	if len(r.InUse) > 0 {
		fmt.Fprintf(o.Log, "kept %s: %d task(s) still use it (%v); uninstall again once they are gone\n", o.ShimPath(), len(r.InUse), r.InUse)
	} else if r.Binary, err = removeIfExists(o.host(o.ShimPath())); err != nil {
		return r, err
	}
	logIf(o, r.Binary, "removed %s", o.ShimPath())
	// Last: a `kubectl exec ... uninstall` loses its stream when
	// containerd restarts, and with it everything printed after.
	r.Restarted, err = o.restartIfChanged(ctx, r.Config || r.DropIn)
	return r, err
}

// restoredConfig returns what the main config should hold without the
// import: the backup when the config is the backup plus Install's edit,
// else the config with the import's entry edited out.
func (o Options) restoredConfig(cfg *mainConfig) ([]byte, error) {
	backup, err := os.ReadFile(o.host(o.Config) + BackupSuffix)
	if err == nil {
		if b, err := parseMainConfig(o.Config, backup); err == nil {
			if installed, err := b.withImport(o.DropInPath()); err == nil && bytes.Equal(installed, cfg.data) {
				return backup, nil
			}
		}
	}
	return cfg.withoutImport(o.DropInPath())
}

// replaceConfig writes data as the main config when it differs, with
// the config's current identity (mode, owner, SELinux label), and
// removes the backup, which describes a state that no longer exists.
func (o Options) replaceConfig(cfg *mainConfig, data []byte) (bool, error) {
	changed := !bytes.Equal(cfg.data, data)
	if changed {
		id, err := identityOf(cfg.file)
		if err != nil {
			return false, fmt.Errorf("config %s: %w", o.Config, err)
		}
		if err := writeAtomic(cfg.file, data, id); err != nil {
			return false, fmt.Errorf("write %s: %w", o.Config, err)
		}
	}
	if _, err := removeIfExists(o.host(o.Config) + BackupSuffix); err != nil {
		return changed, err
	}
	return changed, nil
}

func logIf(o Options, cond bool, format string, args ...any) {
	if cond {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}
