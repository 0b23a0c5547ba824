package proc

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
)

// privateCache points the probe cache at a new directory of the test's own
// and returns it.
func privateCache(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	useProbeCache(t, dir)
	t.Cleanup(forgetProbes)
	return dir
}

// plant writes a cached answer "1" (runc takes --pidfd-socket) for bin's
// key in dir, as another user might.
func plant(t *testing.T, dir, bin string) string {
	t.Helper()
	key := runcCacheKey(bin)
	if key == "" {
		t.Fatal("no cache key")
	}
	path := filepath.Join(dir, key)
	if err := os.WriteFile(path, []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantProbed checks that an old runc was asked, not taken from a planted
// answer.
func wantProbed(t *testing.T, bin, count string) {
	t.Helper()
	if pidfdSocketSupported(&runc.Runc{Command: bin}) {
		t.Fatal("runc 1.1.15 taken for 1.2 or newer: the planted answer was used")
	}
	if n := runs(t, count); n != 1 {
		t.Fatalf("runc probed %d times, want 1", n)
	}
}

// A cache file that is a symlink is not followed, and the probe's answer
// replaces the link, not its target.
func TestRuncProbeCacheSymlinkNotFollowed(t *testing.T) {
	dir := privateCache(t)
	bin, count := fakeRunc(t, "1.1.15")
	target := plant(t, t.TempDir(), bin)
	if err := os.Symlink(target, filepath.Join(dir, filepath.Base(target))); err != nil {
		t.Fatal(err)
	}
	wantProbed(t, bin, count)
	if b, _ := os.ReadFile(target); string(b) != "1" {
		t.Fatalf("symlink target now holds %q: written through the link", b)
	}
	fi, err := os.Lstat(filepath.Join(dir, filepath.Base(target)))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("cache entry after the probe: %v, %v; want a regular file", fi, err)
	}
}

// A cache directory that is a symlink is not used.
func TestRuncProbeCacheDirSymlinkRefused(t *testing.T) {
	real := privateCache(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	useProbeCache(t, link)
	bin, count := fakeRunc(t, "1.1.15")
	plant(t, real, bin)
	wantProbed(t, bin, count)
}

// A cache directory of the shim's user that others may write to is made
// private again, and the probe still answers.
func TestRuncProbeCacheDirModeFixed(t *testing.T) {
	dir := privateCache(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin, count := fakeRunc(t, "1.3.0")
	if !pidfdSocketSupported(&runc.Runc{Command: bin}) {
		t.Fatal("runc 1.3.0 not supported")
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	forgetProbes()
	if !pidfdSocketSupported(&runc.Runc{Command: bin}) || runs(t, count) != 1 {
		t.Fatal("the answer was not cached in the fixed directory")
	}
}

// An answer another user planted in a directory it could write to is not
// taken.
func TestRuncProbeCacheFileOfAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to plant a file as another user")
	}
	dir := privateCache(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin, count := fakeRunc(t, "1.1.15")
	if err := os.Chown(plant(t, dir, bin), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantProbed(t, bin, count)
}

// A cache directory of another user is not used: the probe answers, its
// answer is not cached there, and what is there is not read.
func TestRuncProbeCacheDirOfAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another user")
	}
	dir := privateCache(t)
	bin, count := fakeRunc(t, "1.1.15")
	planted := plant(t, dir, bin)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantProbed(t, bin, count)
	if b, _ := os.ReadFile(planted); string(b) != "1" {
		t.Fatalf("answer written to another user's directory: %q", b)
	}
}

// A probe that timed out is asked again later, in the background: the shim
// is not pinned to pidfd_open for its whole life, and no Create waits for
// the retry.
func TestRuncProbeRetriedAfterTimeout(t *testing.T) {
	privateCache(t)
	oldTimeout, oldRetry := probeTimeout, probeRetry
	probeTimeout, probeRetry = 300*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { probeTimeout, probeRetry = oldTimeout, oldRetry })

	dir := t.TempDir()
	bin, count, slow := filepath.Join(dir, "runc"), filepath.Join(dir, "count"), filepath.Join(dir, "slow")
	// Hangs the first time, answers after.
	script := "#!/bin/sh\necho x >> " + count + "\nif [ ! -e " + slow + " ]; then touch " + slow + "; exec sleep 30; fi\n" +
		"echo 'runc version 1.3.0'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &runc.Runc{Command: bin}
	if pidfdSocketSupported(r) {
		t.Fatal("supported although the probe timed out")
	}
	if pidfdSocketSupported(r) || runs(t, count) != 1 {
		t.Fatalf("asked again at once: runc ran %d times, want 1", runs(t, count))
	}
	time.Sleep(probeRetry)
	start := time.Now()
	if pidfdSocketSupported(r) {
		t.Fatal("the retry's answer came before the retry")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the caller that started the retry waited %s for it", d)
	}
	for deadline := time.Now().Add(10 * time.Second); !pidfdSocketSupported(r); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never retried: runc ran %d times", runs(t, count))
		}
	}
	if n := runs(t, count); n != 2 {
		t.Fatalf("runc ran %d times, want 2", n)
	}
}
