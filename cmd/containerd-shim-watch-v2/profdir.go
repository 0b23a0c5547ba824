package main

// Where the memprof and cpuprof builds write their profiles. A shim runs as
// root: a profile written to a predictable name in a shared directory such
// as /tmp follows whatever symlink another user put there first. So each
// shim makes a directory of its own (mkdir fails on a name that exists, and
// the name is random), owner-only, and creates every file in it
// exclusively, never following a symlink. Nothing here is reachable from
// the default build.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// newProfileDir creates a private directory for pid's profiles under
// parent: parent/watch-prof-PID-RANDOM, mode 0700.
func newProfileDir(parent string, pid int) (string, error) {
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("watch-prof-%d-", pid))
	if err != nil {
		return "", fmt.Errorf("profile dir: %w", err)
	}
	return dir, nil
}

// createProfile creates dir/name for writing, mode 0600; it fails if
// anything, a symlink included, is there already (O_EXCL refuses a symlink
// by itself; O_NOFOLLOW says so twice).
func createProfile(dir, name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

// replaceProfile writes dir/name afresh through write: into a new file
// created exclusively, renamed over the old one, so a reader sees a whole
// profile and a symlink at name is replaced, not followed.
func replaceProfile(dir, name string, write func(io.Writer) error) error {
	tmp := name + ".tmp"
	_ = os.Remove(filepath.Join(dir, tmp)) // left by a write that failed
	f, err := createProfile(dir, tmp)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(filepath.Join(dir, tmp))
	}
	return err
}
