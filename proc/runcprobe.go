package proc

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
)

// Whether a runc binary takes --pidfd-socket (runc 1.2 or newer) is found
// out by running `runc --version`: ~20 ms, on the path of a pod's start when
// its shim's first Create waits for it. The answer is kept per binary in the
// shim (runcProbes) and across the node's shims in probeCacheDir, keyed by
// the binary's path, inode, size and modification time, so that only the
// first shim after runc is installed or replaced runs it. WarmRuncProbe
// starts the probe of the default runc when the server starts.
var runcProbes sync.Map // runc.Runc.Command -> *runcProbe

// probeCacheDir holds the node's probe answers, one file per runc binary.
// A variable for tests.
var probeCacheDir = "/run/containerd-shim-watch-v2/runc-probe"

type runcProbe struct {
	once sync.Once
	ok   bool
}

// WarmRuncProbe probes the default runc in the background.
func WarmRuncProbe() {
	go pidfdSocketSupported(&runc.Runc{})
}

// pidfdSocketSupported reports whether r's binary is runc 1.2 or newer. The
// first caller for a binary finds out; the others wait for its answer.
func pidfdSocketSupported(r *runc.Runc) bool {
	v, _ := runcProbes.LoadOrStore(r.Command, new(runcProbe))
	p := v.(*runcProbe)
	p.once.Do(func() { p.ok = probeRunc(r.Command) })
	return p.ok
}

func probeRunc(command string) bool {
	key := runcCacheKey(command)
	if key != "" {
		switch b, _ := os.ReadFile(filepath.Join(probeCacheDir, key)); string(b) {
		case "1":
			return true
		case "0":
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ver, err := (&runc.Runc{Command: command, PdeathSignal: syscall.SIGKILL}).Version(ctx)
	if err != nil {
		return false // not cached: may be passing
	}
	ok := versionAtLeast(ver.Runc, 1, 2)
	if key != "" {
		answer := "0"
		if ok {
			answer = "1"
		}
		writeProbeCache(key, answer)
	}
	return ok
}

// runcCacheKey names the cache file of the runc binary command resolves to
// ("" if it cannot be found). Replacing the binary changes its inode or
// modification time, and so the key.
func runcCacheKey(command string) string {
	if command == "" {
		command = runc.DefaultCommand
	}
	path, err := exec.LookPath(command)
	if err != nil {
		return ""
	}
	if path, err = filepath.Abs(path); err != nil {
		return ""
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	h := fnv.New64a() // the path's hash keeps the name short
	h.Write([]byte(path))
	return fmt.Sprintf("%016x-%x-%x-%x-%x.%x", h.Sum64(), st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// writeProbeCache records an answer; a failure only costs a later probe.
func writeProbeCache(key, answer string) {
	if err := os.MkdirAll(probeCacheDir, 0o700); err != nil {
		return
	}
	tmp, err := os.CreateTemp(probeCacheDir, ".tmp-")
	if err != nil {
		return
	}
	_, werr := tmp.WriteString(answer)
	if cerr := tmp.Close(); werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(probeCacheDir, key)); err != nil {
		os.Remove(tmp.Name())
	}
}

func versionAtLeast(v string, major, minor int) bool {
	var a, b int
	v = strings.TrimPrefix(v, "v")
	if n, _ := fmt.Sscanf(v, "%d.%d", &a, &b); n < 2 {
		return false
	}
	return a > major || (a == major && b >= minor)
}
