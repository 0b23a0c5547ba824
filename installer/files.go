package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeIfChanged makes path hold data with mode perm. It writes nothing
// when the file already holds exactly that (so its mtime and inode stay),
// and otherwise replaces it atomically: readers and running programs see
// the old file or the new one, never a part. It reports whether it wrote.
func writeIfChanged(path string, data []byte, perm fs.FileMode) (bool, error) {
	if d, err := differs(path, data, perm); err != nil || !d {
		return false, err
	}
	return true, writeAtomic(path, data, modeOnly(perm))
}

// differs reports whether path does not hold exactly data with mode perm.
func differs(path string, data []byte, perm fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}

// writeAtomic writes data to a temp file in path's directory, gives it
// identity id, syncs it, renames it over path and syncs the directory:
// after a crash path is either the old file or the new one, and never
// a file with the installer's defaults in place of the operator's mode,
// owner or label.
func writeAtomic(path string, data []byte, id identity) error {
	dir := filepath.Dir(path)
	pattern := "." + filepath.Base(path) + ".tmp-*"
	if err := removeStale(filepath.Join(dir, pattern)); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := id.apply(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	return syncDir(dir)
}

// removeStale removes the temp files matching pattern that an installer
// killed mid-write left: a glob import (conf.d/*) would feed a half-written
// one to containerd. Only one installer writes at a time (lockHost), so
// none of them is another's write in flight.
func removeStale(pattern string) error {
	stale, _ := filepath.Glob(pattern)
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", f, err)
		}
	}
	return nil
}

// lockHost holds an exclusive flock on the directory of the main config
// (which exists on any host the installer changes) until unlock: two
// installers on one node (a rollout and a `kubectl exec`) take turns.
func (o Options) lockHost() (unlock func(), err error) {
	dir := o.host(filepath.Dir(o.Config))
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", filepath.Dir(o.Config), err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s: %w", filepath.Dir(o.Config), err)
	}
	return func() { d.Close() }, nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeIfExists removes path and reports whether it existed.
func removeIfExists(path string) (bool, error) {
	err := os.Remove(path)
	switch {
	case err == nil:
		return true, syncDir(filepath.Dir(path))
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("remove %s: %w", path, err)
}
