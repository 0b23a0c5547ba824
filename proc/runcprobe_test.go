package proc

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
)

// fakeRunc writes a runc that prints version and counts its runs in a file.
func fakeRunc(t *testing.T, version string) (bin, count string) {
	t.Helper()
	dir := t.TempDir()
	bin, count = filepath.Join(dir, "runc"), filepath.Join(dir, "count")
	script := "#!/bin/sh\necho x >> " + count + "\nsleep 0.2\necho 'runc version " + version + "'\necho 'spec: 1.2.0'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, count
}

func runs(t *testing.T, count string) int {
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "x")
}

// useProbeCache points the node's probe cache at dir for the test.
func useProbeCache(t *testing.T, dir string) {
	old := probeCacheDir
	probeCacheDir = dir
	t.Cleanup(func() { probeCacheDir = old })
}

// forgetProbes drops what this process learnt, as a new shim would start.
func forgetProbes() {
	runcProbes.Range(func(k, _ any) bool { runcProbes.Delete(k); return true })
}

// The probe runs once per runc binary however many Creates ask at once, and
// an answer for one binary is not taken for another.
func TestPidfdSocketProbeOncePerBinary(t *testing.T) {
	useProbeCache(t, t.TempDir())
	newer, newerCount := fakeRunc(t, "1.3.0")
	older, olderCount := fakeRunc(t, "1.1.15")
	var wg sync.WaitGroup
	got := make([]bool, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bin := newer
			if i%2 == 1 {
				bin = older
			}
			got[i] = pidfdSocketSupported(&runc.Runc{Command: bin})
		}()
	}
	wg.Wait()
	for i, ok := range got {
		if want := i%2 == 0; ok != want {
			t.Errorf("caller %d: supported = %v, want %v", i, ok, want)
		}
	}
	if n := runs(t, newerCount); n != 1 {
		t.Errorf("runc 1.3.0 probed %d times, want 1", n)
	}
	if n := runs(t, olderCount); n != 1 {
		t.Errorf("runc 1.1.15 probed %d times, want 1", n)
	}
}

// WarmRuncProbe starts the default runc's probe without waiting for it; a
// later caller gets its answer without running runc again.
func TestWarmRuncProbe(t *testing.T) {
	useProbeCache(t, t.TempDir())
	bin, count := fakeRunc(t, "1.2.5")
	t.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	runcProbes.Delete("")
	t.Cleanup(func() { runcProbes.Delete("") })
	WarmRuncProbe()
	// The probe must start on its own, before anyone asks.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(count); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("WarmRuncProbe did not run runc")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !pidfdSocketSupported(&runc.Runc{}) {
		t.Fatal("default runc 1.2.5: pidfd socket not supported")
	}
	if n := runs(t, count); n != 1 {
		t.Errorf("default runc probed %d times, want 1", n)
	}
}

// A second shim takes the first one's answer from the node's cache without
// running runc; replacing the binary makes the next shim probe again.
func TestPidfdSocketProbeCachedAcrossShims(t *testing.T) {
	useProbeCache(t, filepath.Join(t.TempDir(), "cache"))
	t.Cleanup(forgetProbes)
	bin, count := fakeRunc(t, "1.3.0")
	if !pidfdSocketSupported(&runc.Runc{Command: bin}) {
		t.Fatal("first shim: runc 1.3.0 not supported")
	}
	forgetProbes()
	if !pidfdSocketSupported(&runc.Runc{Command: bin}) {
		t.Fatal("second shim: runc 1.3.0 not supported")
	}
	if n := runs(t, count); n != 1 {
		t.Fatalf("runc probed %d times by two shims, want 1", n)
	}

	// An older runc installed in its place.
	script := "#!/bin/sh\necho x >> " + count + "\necho 'runc version 1.1.15'\n"
	if err := os.WriteFile(bin+".new", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	forgetProbes()
	if pidfdSocketSupported(&runc.Runc{Command: bin}) {
		t.Fatal("replaced by runc 1.1.15: still supported")
	}
	if n := runs(t, count); n != 2 {
		t.Fatalf("runc probed %d times, want 2 after the binary was replaced", n)
	}
}

// A failed probe is not cached: the next shim tries again.
func TestPidfdSocketProbeFailureNotCached(t *testing.T) {
	useProbeCache(t, t.TempDir())
	t.Cleanup(forgetProbes)
	dir := t.TempDir()
	bin, count := filepath.Join(dir, "runc"), filepath.Join(dir, "count")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho x >> "+count+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		forgetProbes()
		if pidfdSocketSupported(&runc.Runc{Command: bin}) {
			t.Fatal("failing runc: supported")
		}
	}
	if n := runs(t, count); n != 2 {
		t.Fatalf("failing runc probed %d times by two shims, want 2", n)
	}
}

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
