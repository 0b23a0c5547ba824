package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"
)

// ErrNotInstalled is returned, wrapped, by Check for a node on which
// runtime watch is not (or no longer) installed as Install leaves it.
var ErrNotInstalled = errors.New("installer: runtime watch not installed")

// uninstallName marks, in the conf.d directory, an uninstall in progress:
// written before the node label is removed and kept until Install runs
// again or the registration is gone, so that no label keeper puts the
// label back while watch pods drain.
const uninstallName = "containerd-shim-watch.uninstall-requested"

// Check reports whether the installation on the host is intact: the
// binary is an executable file, the drop-in registers runtime watch with
// it, the main config imports the drop-in and no containerd restart is
// pending. It reads and changes nothing else, and never restarts
// anything. The error wraps ErrNotInstalled (or says why the host could
// not be read) and names what is missing.
func Check(o Options) error {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	unlock, err := o.lockHost()
	if err != nil {
		return err
	}
	defer unlock()
	return o.check()
}

// check is Check under the host lock.
func (o Options) check() error {
	if err := o.checkBinary(); err != nil {
		return err
	}
	cfg, err := o.readConfig()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	if err := o.checkDropIn(cfg.version); err != nil {
		return err
	}
	if ok, err := cfg.importsFile(o.DropInPath()); err != nil {
		return fmt.Errorf("%w: %w", ErrNotInstalled, err)
	} else if !ok {
		return fmt.Errorf("%w: %s does not import %s", ErrNotInstalled, o.Config, o.DropInPath())
	}
	if _, err := os.Lstat(o.host(filepath.Join(o.ConfDir, pendingName))); err == nil {
		return fmt.Errorf("%w: containerd was not restarted since its configuration changed (%s)", ErrNotInstalled, filepath.Join(o.ConfDir, pendingName))
	}
	return nil
}

// checkBinary checks the shim is an executable regular file.
func (o Options) checkBinary() error {
	st, err := os.Stat(o.host(o.ShimPath()))
	if err != nil {
		return fmt.Errorf("%w: shim %s: %w", ErrNotInstalled, o.ShimPath(), pathless(err))
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: shim %s is not an executable file (%v)", ErrNotInstalled, o.ShimPath(), st.Mode())
	}
	return nil
}

// checkDropIn checks the drop-in registers runtime watch, of type
// RuntimeType at ShimPath, under the CRI plugin of config version v.
func (o Options) checkDropIn(v int64) error {
	data, err := os.ReadFile(o.host(o.DropInPath()))
	if err != nil {
		return fmt.Errorf("%w: drop-in %s: %w", ErrNotInstalled, o.DropInPath(), pathless(err))
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: drop-in %s: %w", ErrNotInstalled, o.DropInPath(), err)
	}
	rt := table(doc, "plugins", criRuntimePlugin(v), "containerd", "runtimes", RuntimeName)
	if rt["runtime_type"] != RuntimeType || rt["runtime_path"] != o.ShimPath() {
		return fmt.Errorf("%w: drop-in %s does not register runtime %s at %s", ErrNotInstalled, o.DropInPath(), RuntimeName, o.ShimPath())
	}
	return nil
}

// RequestUninstall records on the host that an uninstall has begun, so
// that a label keeper (KeepLabel) stops labelling the node; call it
// before removing the label. Install forgets the request; Uninstall does
// once the registration is gone. A host without the conf.d directory has
// nothing installed, and nothing is written.
func RequestUninstall(o Options) error {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	unlock, err := o.lockHost()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(o.host(o.ConfDir)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := writeAtomic(o.host(filepath.Join(o.ConfDir, uninstallName)), nil, modeOnly(0o644)); err != nil {
		return fmt.Errorf("record uninstall request: %w", err)
	}
	return nil
}

// uninstallRequested reports whether RequestUninstall's marker exists.
func (o Options) uninstallRequested() bool {
	_, err := os.Lstat(o.host(filepath.Join(o.ConfDir, uninstallName)))
	return !errors.Is(err, fs.ErrNotExist)
}

// forgetUninstall removes RequestUninstall's marker.
func (o Options) forgetUninstall() error {
	if _, err := removeIfExists(o.host(filepath.Join(o.ConfDir, uninstallName))); err != nil {
		return fmt.Errorf("forget uninstall request: %w", err)
	}
	return nil
}

// pathless drops the installer's path from a file error: messages name
// host paths, as the operator knows them.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
