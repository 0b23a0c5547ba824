package proc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// privateDir makes sure dir exists and is the shim's own: a directory, not
// a symlink, owned by the shim's effective user (root on a node), with no
// permission for group or others. The shim keeps what it trusts there (its
// pidfd sockets, the runc probe answers), so no other user may put, read or
// connect to anything in it. A directory of the shim's user with a looser
// mode is tightened to 0700; one of another user, or a symlink, is refused.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Checked and fixed through one descriptor, so that what is checked is
	// what is fixed.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s is owned by uid %d, not %d", dir, st.Uid, euid)
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	return nil
}
