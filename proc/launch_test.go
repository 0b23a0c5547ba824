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

// The probe runs once per runc binary however many Creates ask at once, and
// an answer for one binary is not taken for another.
func TestPidfdSocketProbeOncePerBinary(t *testing.T) {
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
