package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// keptXattrs are the extended attributes a rewritten file takes over from
// the file it replaces: its SELinux label (a config labelled for
// containerd must stay readable by a confined containerd) and its access
// ACL. A variable so that tests can add a user.* attribute, which needs
// neither root nor SELinux.
var keptXattrs = []string{"security.selinux", "system.posix_acl_access"}

// identity is what makes a file the operator's beyond its bytes: mode,
// owner and the keptXattrs it carries. A file written through writeAtomic
// is a new inode, created by the installer with its own defaults; an
// identity applied to it before the rename makes it the old file's twin.
type identity struct {
	mode     fs.FileMode // permission and setuid/setgid/sticky bits
	uid, gid int         // -1: the installer's own
	xattrs   map[string][]byte
}

// modeOnly is the identity of a file the installer owns: mode perm,
// owned by the installer (root on a node).
func modeOnly(perm fs.FileMode) identity {
	return identity{mode: perm, uid: -1, gid: -1}
}

// identityOf reads the identity of file (symlinks followed). Attributes
// the filesystem does not support, or the file does not carry, are left
// out.
func identityOf(file string) (identity, error) {
	st, err := os.Stat(file)
	if err != nil {
		return identity{}, fmt.Errorf("stat %s: %w", file, err)
	}
	id := identity{mode: st.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), uid: -1, gid: -1}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.uid, id.gid = int(sys.Uid), int(sys.Gid)
	}
	for _, name := range keptXattrs {
		v, err := getxattr(file, name)
		if err != nil {
			return identity{}, err
		}
		if v != nil {
			if id.xattrs == nil {
				id.xattrs = map[string][]byte{}
			}
			id.xattrs[name] = v
		}
	}
	return id, nil
}

// getxattr returns the value of xattr name of file, nil when the file
// has none or its filesystem knows no such attribute.
func getxattr(file, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(file, name, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.ERANGE):
			sz, err := unix.Getxattr(file, name, nil)
			if err != nil {
				return nil, fmt.Errorf("getxattr %s %s: %w", file, name, err)
			}
			buf = make([]byte, sz)
		case ignorableXattrErr(err):
			return nil, nil
		default:
			return nil, fmt.Errorf("getxattr %s %s: %w", file, name, err)
		}
	}
}

// ignorableXattrErr is true for "no such attribute" and "not supported
// here" (ENOTSUP is EOPNOTSUPP on Linux).
func ignorableXattrErr(err error) bool {
	return errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP)
}

// apply gives f the identity: owner first (a chown clears setuid and
// setgid bits), then mode, then the attributes (an ACL last, as it
// rewrites the group bits to its mask).
func (id identity) apply(f *os.File) error {
	if id.uid != -1 || id.gid != -1 {
		if err := f.Chown(id.uid, id.gid); err != nil {
			return fmt.Errorf("chown %s: %w", f.Name(), err)
		}
	}
	if err := f.Chmod(id.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	for _, name := range keptXattrs {
		v, ok := id.xattrs[name]
		if !ok {
			continue
		}
		if err := unix.Fsetxattr(int(f.Fd()), name, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("setxattr %s %s: %w", f.Name(), name, err)
		}
	}
	return nil
}

// ensureDir creates host directory dir and its missing parents as
// containerd's own directories are: mode 0755 whatever the umask, owned
// by root when the installer is root. Directories that exist are the
// operator's and stay as they are.
func (o Options) ensureDir(dir string) error {
	p := o.host(dir)
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := o.ensureDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(p, 0o755); errors.Is(err, fs.ErrExist) {
		return nil // another installer's, made the same way
	} else if err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	return nil
}
