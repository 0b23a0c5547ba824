//go:build e2e

package harness

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// tempPrefix names the temporary directories of all instances.
const tempPrefix = "watch-e2e-"

var (
	liveMu     sync.Mutex
	live       = map[*Containerd]bool{}
	signalOnce sync.Once
)

// register tracks c so that SIGINT/SIGTERM to the test binary cleans it up.
func register(c *Containerd) {
	liveMu.Lock()
	live[c] = true
	liveMu.Unlock()
	signalOnce.Do(func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-sigs
			cleanupLive()
			fmt.Fprintf(os.Stderr, "harness: %v: cleaned up, exiting\n", sig)
			os.Exit(2)
		}()
	})
}

func unregister(c *Containerd) {
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
}

func cleanupLive() {
	liveMu.Lock()
	var cs []*Containerd
	for c := range live {
		cs = append(cs, c)
	}
	liveMu.Unlock()
	for _, c := range cs {
		c.Cleanup()
	}
}

// writeOwner records the test binary's pid in dir for sweepStale.
func writeOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// sweepStale cleans the directories of instances whose test binary died
// without cleaning up (e.g. killed by go test's timeout).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		cleanDir(dir)
		removeNodeState(dir)
	}
}
