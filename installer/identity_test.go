package installer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// testXattr stands in for security.selinux: a user.* attribute needs
// neither root nor an SELinux kernel, and goes through the same copy.
const testXattr = "user.watch-installer-test"

// keepTestXattr adds testXattr to keptXattrs for the test and sets it on
// file, skipping when the filesystem has no user attributes.
func keepTestXattr(t *testing.T, file string, value string) {
	t.Helper()
	if err := unix.Setxattr(file, testXattr, []byte(value), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skipf("no user xattrs on the test filesystem: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	old := keptXattrs
	keptXattrs = append(append([]string{}, old...), testXattr)
	t.Cleanup(func() { keptXattrs = old })
}

// checkIdentity fails unless file has mode, owner uid:gid (-1: not
// checked) and testXattr value ("" : not checked).
func checkIdentity(t *testing.T, what, file string, mode fs.FileMode, uid, gid int, xattr string) {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got := st.Mode().Perm(); got != mode {
		t.Errorf("%s: mode %v, want %v", what, got, mode)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if uid != -1 && (int(sys.Uid) != uid || int(sys.Gid) != gid) {
		t.Errorf("%s: owner %d:%d, want %d:%d", what, sys.Uid, sys.Gid, uid, gid)
	}
	if xattr != "" {
		v, err := getxattr(file, testXattr)
		if err != nil || string(v) != xattr {
			t.Errorf("%s: %s = %q (%v), want %q", what, testXattr, v, err, xattr)
		}
	}
}

// installAndUninstall installs and uninstalls on b, checking the config,
// its backup and the restored config with check.
func installAndUninstall(b *bed, check func(what, file string)) {
	cfg, backup := b.opts.host(DefaultConfig), b.opts.host(DefaultConfig+BackupSuffix)
	b.install()
	check("config after install", cfg)
	check("backup", backup)
	b.uninstall()
	check("config after uninstall", cfg)
}

// The rewritten config and its backup keep the config's mode, also one
// the installer would never choose.
func TestConfigKeepsMode(t *testing.T) {
	b := newBed(t, configV3)
	if err := os.Chmod(b.opts.host(DefaultConfig), 0o640); err != nil {
		t.Fatal(err)
	}
	installAndUninstall(b, func(what, file string) { checkIdentity(t, what, file, 0o640, -1, -1, "") })
}

// ... and its extended attributes: the SELinux label's copy path, shown
// with a user.* attribute.
func TestConfigKeepsXattrs(t *testing.T) {
	b := newBed(t, configV3)
	keepTestXattr(t, b.opts.host(DefaultConfig), "system_u:object_r:container_config_t:s0")
	installAndUninstall(b, func(what, file string) {
		checkIdentity(t, what, file, 0o600, -1, -1, "system_u:object_r:container_config_t:s0")
	})
}

// ... and its owner (root only: nobody else may give a file away).
func TestConfigKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	b := newBed(t, configV3)
	if err := os.Chown(b.opts.host(DefaultConfig), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	installAndUninstall(b, func(what, file string) { checkIdentity(t, what, file, 0o600, 1234, 5678, "") })
}

// The setgid bit survives the owner's copy (a chown after the chmod
// would clear it).
func TestConfigKeepsSetgid(t *testing.T) {
	b := newBed(t, configV3)
	cfg := b.opts.host(DefaultConfig)
	if err := os.Chmod(cfg, 0o640|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	b.install()
	if st, _ := os.Stat(cfg); st.Mode()&fs.ModeSetgid == 0 {
		t.Errorf("config mode %v after install, want setgid kept", st.Mode())
	}
}

// A config without the attributes on a filesystem without them is
// rewritten as before: absent or unsupported attributes are skipped.
func TestIdentityWithoutXattrs(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	mustWrite(t, f, "x", 0o644)
	old := keptXattrs
	keptXattrs = append(append([]string{}, old...), testXattr, "trusted.not-there")
	t.Cleanup(func() { keptXattrs = old })
	id, err := identityOf(f)
	if err != nil || len(id.xattrs) != 0 {
		t.Fatalf("identity %+v, %v; want no attributes", id, err)
	}
	if err := writeAtomic(f, []byte("y"), id); err != nil {
		t.Fatal(err)
	}
}

// The directories Install creates are 0755 (and root's, as root) under
// any umask; an operator's existing directory keeps its mode.
func TestCreatedDirsAreSane(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	b := newBed(t, configV3)
	b.opts.InstallDir = "/opt/watch/bin"
	mustWrite(t, b.opts.host("/opt/keep/x"), "", 0o644)
	if err := os.Chmod(b.opts.host("/opt/keep"), 0o750); err != nil {
		t.Fatal(err)
	}
	b.opts.ConfDir = "/opt/keep/conf.d"
	b.install()
	uid := -1
	if os.Geteuid() == 0 {
		uid = 0
	}
	for _, d := range []string{"/opt/watch", "/opt/watch/bin", "/opt/keep/conf.d"} {
		checkIdentity(t, d, b.opts.host(d), 0o755, uid, uid, "")
	}
	checkIdentity(t, "operator's /opt/keep", b.opts.host("/opt/keep"), 0o750, -1, -1, "")
}
