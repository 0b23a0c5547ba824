//go:build e2e

package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcStatus is what the kernel reports of one process that tests and
// benchmarks compare: fields of /proc/PID/status and the number of open
// file descriptors.
type ProcStatus struct {
	Threads int // Threads: of /proc/PID/status
	RssAnon int // RssAnon: of /proc/PID/status, in KiB
	FDs     int // entries of /proc/PID/fd
}

// ReadProcStatus reads the status of pid. It fails when the process is
// gone or unreadable; the fields read before the failure are set, the
// others are zero, so callers summing over processes may ignore the error.
func ReadProcStatus(pid int) (ProcStatus, error) {
	var st ProcStatus
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("status of %d: %w", pid, err)
	}
	fields := statusFields(data)
	st.Threads, st.RssAnon = fields["Threads"], fields["RssAnon"]
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, fmt.Errorf("fds of %d: %w", pid, err)
	}
	st.FDs = len(fds)
	return st, nil
}

// statusFields returns the numeric fields of a /proc/PID/status file by
// name, their unit (kB) dropped; other fields are left out.
func statusFields(data []byte) map[string]int {
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		f := strings.Fields(value)
		if !ok || len(f) == 0 {
			continue
		}
		if n, err := strconv.Atoi(f[0]); err == nil {
			out[key] = n
		}
	}
	return out
}

// WatchCounters asks a watch shim for its counters (`containerd-shim-watch-v2
// counters PID`, run from the shim's own binary) and returns the numeric
// ones by name. It fails when pid is not a watch shim or does not answer.
func WatchCounters(pid int) (map[string]float64, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("counters of %d: %w", pid, err)
	}
	if filepath.Base(exe) != WatchShim {
		return nil, fmt.Errorf("counters of %d: %s is not a watch shim", pid, exe)
	}
	out, err := exec.Command(exe, "counters", strconv.Itoa(pid)).Output()
	if err != nil {
		return nil, fmt.Errorf("counters of %d: %w", pid, err)
	}
	var all map[string]any
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("counters of %d: %w: %s", pid, err, out)
	}
	counters := map[string]float64{}
	for k, v := range all {
		if f, ok := v.(float64); ok {
			counters[k] = f
		}
	}
	return counters, nil
}
