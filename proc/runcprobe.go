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
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Whether a runc binary takes --pidfd-socket (runc 1.2 or newer) is found
// out by running `runc --version`, on the path of a pod's start when its
// shim's first Create waits for it (its cost: docs/performance.md). The answer is kept per binary in the
// shim (runcProbes) and across the node's shims in probeCacheDir, keyed by
// the binary's path, inode, size and modification time, so that only the
// first shim after runc is installed or replaced runs it. WarmRuncProbe
// starts the probe of the default runc when the server starts.
var runcProbes sync.Map // runc.Runc.Command -> *runcProbe

// probeCacheDir holds the node's probe answers, one file per runc binary.
// It must be private (privateDir): an answer planted by another user would
// decide how the shim talks to runc. A variable for tests.
var probeCacheDir = "/run/containerd-shim-watch-v2/runc-probe"

// probeTimeout bounds one `runc --version`; probeRetry is how long a shim
// then goes without asking again, taking pidfds with pidfd_open meanwhile.
// Variables for tests.
var (
	probeTimeout = 10 * time.Second
	probeRetry   = 30 * time.Second
)

// runcProbe is what a shim knows about one runc binary. The first caller
// runs the probe and the others wait for it; a probe that fails (runc
// timed out, or could not run) is asked again in the background by the
// first caller after probeRetry, so one slow start does not pin the shim
// to pidfd_open for its whole life.
type runcProbe struct {
	first sync.Once

	mu       sync.Mutex
	known    bool // ok is runc's answer
	ok       bool
	retryAt  time.Time // while not known
	retrying bool
}

// WarmRuncProbe probes the default runc in the background.
func WarmRuncProbe() {
	go pidfdSocketSupported(&runc.Runc{})
}

// pidfdSocketSupported reports whether r's binary is runc 1.2 or newer
// (false while that is not known).
func pidfdSocketSupported(r *runc.Runc) bool {
	v, _ := runcProbes.LoadOrStore(r.Command, new(runcProbe))
	return v.(*runcProbe).answer(r.Command)
}

func (p *runcProbe) answer(command string) bool {
	p.first.Do(func() { p.settle(probeRunc(command)) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known || p.retrying || time.Now().Before(p.retryAt) {
		return p.ok
	}
	p.retrying = true
	go func() { p.settle(probeRunc(command)) }()
	return p.ok
}

func (p *runcProbe) settle(ok bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retrying = false
	if err != nil {
		p.retryAt = time.Now().Add(probeRetry)
		log.L.WithError(err).Warn("runc probe failed: taking pidfds with pidfd_open until it answers")
		return
	}
	p.known, p.ok = true, ok
}

// probeRunc answers from the node's cache, or runs `runc --version` and
// caches its answer. An error means no answer.
func probeRunc(command string) (bool, error) {
	key := runcCacheKey(command)
	if key != "" {
		if ok, found := readProbeCache(key); found {
			return ok, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	ver, err := (&runc.Runc{Command: command, PdeathSignal: syscall.SIGKILL}).Version(ctx)
	if err != nil {
		return false, fmt.Errorf("runc --version: %w", err) // not cached: may be passing
	}
	ok := versionAtLeast(ver.Runc, 1, 2)
	if key != "" {
		answer := "0"
		if ok {
			answer = "1"
		}
		writeProbeCache(key, answer)
	}
	return ok, nil
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

// readProbeCache returns the cached answer for key, if the cache
// directory is private and holds one: a regular file of the shim's user,
// not reached through a symlink.
func readProbeCache(key string) (ok, found bool) {
	if privateDir(probeCacheDir) != nil {
		return false, false
	}
	fd, err := unix.Open(filepath.Join(probeCacheDir, key), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return false, false
	}
	var b [2]byte
	n, _ := unix.Read(fd, b[:])
	switch string(b[:n]) {
	case "1":
		return true, true
	case "0":
		return false, true
	}
	return false, false
}

// writeProbeCache records an answer; a failure only costs a later probe.
// The file is created new (O_EXCL) and renamed over the key, so no symlink
// is followed.
func writeProbeCache(key, answer string) {
	if privateDir(probeCacheDir) != nil {
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
