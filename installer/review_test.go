package installer

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// blockMarker makes the restart marker unwritable (a non-empty directory
// in its place), standing in for an installer that dies right after its
// configuration writes; unblock removes it.
func (b *bed) blockMarker() (unblock func()) {
	b.t.Helper()
	m := b.opts.host(filepath.Join(b.opts.ConfDir, pendingName))
	mustWrite(b.t, filepath.Join(m, "x"), "", 0o644)
	return func() {
		if err := os.RemoveAll(m); err != nil {
			b.t.Fatal(err)
		}
	}
}

// An install that stops after writing containerd's configuration but
// before recording that containerd must restart leaves containerd
// without runtime watch; the next run must still restart it.
func TestInstallInterruptedBeforeRestartRestartsNextRun(t *testing.T) {
	b := newBed(t, configV3)
	unblock := b.blockMarker()
	if _, err := Install(context.Background(), b.opts); err == nil {
		t.Fatal("install with an unwritable marker succeeded")
	}
	unblock()
	b.install()
	if b.restart.n != 1 {
		t.Fatalf("containerd restarted %d times after the interrupted install and a re-run, want 1: it never loads the drop-in", b.restart.n)
	}
}

// The same for uninstall: an uninstall that stops after removing the
// registration must be followed by a restart on the next run.
func TestUninstallInterruptedBeforeRestartRestartsNextRun(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	n := b.restart.n
	unblock := b.blockMarker()
	if _, err := Uninstall(context.Background(), b.opts, false); err == nil {
		t.Fatal("uninstall with an unwritable marker succeeded")
	}
	unblock()
	b.uninstall()
	if b.restart.n != n+1 {
		t.Fatalf("containerd restarted %d times by the interrupted uninstall and a re-run, want 1", b.restart.n-n)
	}
}

// Host paths must be absolute: a relative runtime_path or import entry
// means something else to containerd than to the installer.
func TestInstallRefusesRelativeHostPaths(t *testing.T) {
	for _, set := range []func(*Options){
		func(o *Options) { o.InstallDir = "usr/local/bin" },
		func(o *Options) { o.ConfDir = "conf.d" },
		func(o *Options) { o.Config = "etc/containerd/config.toml" },
		func(o *Options) { o.StateDir = "run/containerd" },
	} {
		b := newBed(t, configV3)
		set(&b.opts)
		before := snapshot(t, b.opts.HostRoot)
		if _, err := Install(context.Background(), b.opts); err == nil {
			t.Errorf("install with %+v succeeded", b.opts)
		}
		if _, err := Uninstall(context.Background(), b.opts, false); err == nil {
			t.Errorf("uninstall with %+v succeeded", b.opts)
		}
		sameSnapshot(t, "relative path", before, snapshot(t, b.opts.HostRoot))
	}
}

// A config.toml that is a symlink (config management) stays a symlink:
// the installer edits its target, and uninstall restores the target.
func TestInstallConfigSymlink(t *testing.T) {
	for _, target := range []string{"managed/config.toml", "/etc/containerd/managed/config.toml"} {
		b := newBed(t, configV3)
		link := b.opts.host(DefaultConfig)
		real := b.opts.host("/etc/containerd/managed/config.toml")
		mustWrite(t, real, configV3, 0o600)
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		b.install()
		if st, err := os.Lstat(link); err != nil || st.Mode().Type() != os.ModeSymlink {
			t.Fatalf("%s: config.toml is no longer a symlink after install (%v)", target, err)
		}
		data, _ := os.ReadFile(real)
		if !strings.Contains(string(data), DropInName) {
			t.Fatalf("%s: the symlink's target does not import the drop-in:\n%s", target, data)
		}
		b.uninstall()
		if st, err := os.Lstat(link); err != nil || st.Mode().Type() != os.ModeSymlink {
			t.Fatalf("%s: config.toml is no longer a symlink after uninstall (%v)", target, err)
		}
		if data, _ := os.ReadFile(real); string(data) != configV3 {
			t.Fatalf("%s: target not restored:\n%s", target, data)
		}
	}
}

// Unusual but valid shapes: CRLF, an import glob covering the drop-in
// (nothing added, the glob kept on uninstall), a conf.d symlink; and
// configs containerd itself refuses (empty, a BOM, imports a string) are
// refused with nothing changed.
func TestInstallUnusualShapes(t *testing.T) {
	crlf := strings.ReplaceAll(configV3, "\n", "\r\n")
	b := newBed(t, crlf)
	b.install()
	b.uninstall()
	if got := b.read(DefaultConfig); got != crlf {
		t.Errorf("CRLF config not restored:\n%q", got)
	}

	glob := "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"
	b = newBed(t, glob)
	if r := b.install(); r.Config {
		t.Errorf("glob covering the drop-in: config rewritten:\n%s", b.read(DefaultConfig))
	}
	b.uninstall()
	if got := b.read(DefaultConfig); got != glob {
		t.Errorf("glob config changed by uninstall:\n%s", got)
	}

	b = newBed(t, configV3)
	real := b.opts.host("/etc/containerd/real-conf.d")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real-conf.d", b.opts.host(DefaultConfDir)); err != nil {
		t.Fatal(err)
	}
	b.install()
	if _, err := os.Stat(filepath.Join(real, DropInName)); err != nil {
		t.Errorf("drop-in not in the conf.d symlink's target: %v", err)
	}

	for _, bad := range []string{"", "\ufeffversion = 3\n", "version = 3\nimports = \"/etc/containerd/conf.d/*.toml\"\n"} {
		b = newBed(t, bad)
		before := snapshot(t, b.opts.HostRoot)
		if _, err := Install(context.Background(), b.opts); err == nil {
			t.Errorf("config %q accepted: %s", bad, b.read(DefaultConfig))
		}
		sameSnapshot(t, "refused config", before, snapshot(t, b.opts.HostRoot))
	}
}

// The installer's ClusterRole grants what node.go sends, a GET and a
// PATCH of nodes, and nothing else.
func TestRBACLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile("../deploy/10-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- "))
		for _, k := range []string{"apiGroups:", "resources:", "verbs:", "resourceNames:", "nonResourceURLs:"} {
			if strings.HasPrefix(l, k) {
				rules = append(rules, l)
			}
		}
	}
	want := []string{`apiGroups: [""]`, `resources: ["nodes"]`, `verbs: ["get", "patch"]`}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Errorf("ClusterRole rules:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
}

// Two installers at once (a rollout overlapping a manual run) leave one
// import, the drop-in and a backup of the operator's config.
func TestInstallConcurrent(t *testing.T) {
	for range 10 {
		b := newBed(t, configV3)
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				o := b.opts
				o.Restart = NoRestart{}
				_, err := Install(context.Background(), o)
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		got := b.read(DefaultConfig)
		if strings.Count(got, DropInName) != 1 {
			t.Fatalf("config after two installers:\n%s", got)
		}
		if bak := b.read(DefaultConfig + BackupSuffix); bak != configV3 {
			t.Fatalf("backup:\n%s", bak)
		}
		b.uninstall()
		if got := b.read(DefaultConfig); got != configV3 {
			t.Fatalf("after uninstall:\n%s", got)
		}
	}
}

// A systemd that accepts on its private socket and never answers must
// not hold the installer past its deadline.
func TestSystemdRestartTimesOut(t *testing.T) {
	root := t.TempDir()
	sock := filepath.Join(root, "run/systemd/private")
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&SystemdRestart{Unit: "containerd.service", HostRoot: root}).Restart(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("restart through a mute systemd: %v, want the deadline named", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("restart through a mute systemd still waiting 5 s after its 300 ms deadline")
	}
}

// An installer killed while writing leaves its temp file; a later run
// removes it, so that a glob import such as conf.d/* never feeds a
// half-written drop-in to containerd, and /usr/local/bin keeps no debris.
func TestInstallRemovesStaleTempFiles(t *testing.T) {
	b := newBed(t, configV3)
	stale := []string{
		filepath.Join(DefaultConfDir, "."+DropInName+".tmp-123"),
		filepath.Join(DefaultInstallDir, "."+ShimName+".tmp-456"),
		DefaultConfig[:len(DefaultConfig)-len("config.toml")] + ".config.toml.tmp-789",
	}
	for _, s := range stale {
		mustWrite(t, b.opts.host(s), "version = 3\n[plugins", 0o600)
	}
	b.install()
	for _, s := range stale {
		if b.exists(s) {
			t.Errorf("%s left after install", s)
		}
	}
}

// The DaemonSet mounts read-write only what the installer writes
// (/etc/containerd and the install dir); containerd's state, systemd's
// run dir and the node log's dir it only reads and connects to sockets
// in, which a read-only mount allows.
func TestDaemonSetWritableMounts(t *testing.T) {
	data, err := os.ReadFile("../deploy/20-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writable := map[string]bool{"/host/etc/containerd": true, "/host/usr/local/bin": true}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		_, rest, ok := strings.Cut(l, "mountPath: ")
		if !ok {
			continue
		}
		n++
		path := strings.TrimSpace(strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == '}' })[0])
		if ro := strings.Contains(l, "readOnly: true"); ro == writable[path] {
			t.Errorf("%s: readOnly %v, want %v", path, ro, !writable[path])
		}
	}
	if n != 5 {
		t.Errorf("%d mounts, want 5", n)
	}
}

// Upgrading while the installed shim runs (ETXTBSY for a write in
// place) replaces it; the running process keeps its old image.
func TestInstallOverRunningBinary(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	img, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	b := newBed(t, configV3)
	mustWrite(t, b.opts.Shim, string(img), 0o755)
	b.install()
	cmd := exec.Command(b.opts.host(b.opts.ShimPath()), "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if f, err := os.OpenFile(b.opts.host(b.opts.ShimPath()), os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("running binary opened for writing: the test does not exercise ETXTBSY")
	}
	mustWrite(t, b.opts.Shim, string(img)+"v2", 0o755)
	if r := b.install(); !r.Binary {
		t.Errorf("upgrade over a running binary: %+v", r)
	}
	if got := b.read(b.opts.ShimPath()); got != string(img)+"v2" {
		t.Errorf("installed binary not replaced")
	}
}
