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
