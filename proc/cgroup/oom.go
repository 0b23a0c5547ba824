package cgroup

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// oomKilledAt reports whether the kernel's OOM killer has killed a process
// in the memory cgroup at dir. It reads the oom_kill counter of cgroup v2
// (memory.events) or, failing that, of cgroup v1 (memory.oom_control).
// Read synchronously at init exit, it cannot lose the race an
// asynchronous notification can.
func oomKilledAt(dir string) bool {
	for _, name := range []string{"memory.events", "memory.oom_control"} {
		if n, ok := readCounter(filepath.Join(dir, name), "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// readCounter reads "key value" lines and returns key's value.
func readCounter(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
