//go:build e2e

package harness

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// process is one entry of /proc.
type process struct {
	pid     int
	exe     string   // base name of argv[0]
	cmdline []string // argv
	environ string   // NUL separated environment
}

// processes lists all processes except the caller, skipping vanished ones.
func processes() []process {
	entries, _ := os.ReadDir("/proc")
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		out = append(out, process{pid: pid, exe: filepath.Base(argv[0]), cmdline: argv, environ: string(env)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// references reports whether p's command line or environment mentions s.
func (p process) references(s string) bool {
	return strings.Contains(strings.Join(p.cmdline, " "), s) || strings.Contains(p.environ, s)
}

func (p process) String() string {
	return strconv.Itoa(p.pid) + " " + strings.Join(p.cmdline, " ")
}

// processesUnder returns the processes referencing dir (containerd, shims,
// ctr and crictl calls of this instance).
func processesUnder(dir string) []process {
	var out []process
	for _, p := range processes() {
		if p.references(dir) {
			out = append(out, p)
		}
	}
	return out
}

// ShimPids returns the pids of this containerd's shims of the given runtime:
// "runc", "watch", a runtime type or a shim binary name.
func (c *Containerd) ShimPids(runtime string) []int {
	shim := shimBinary(runtime)
	var pids []int
	for _, p := range processes() {
		if p.exe == shim && p.references(c.Address) {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

func shimBinary(runtime string) string {
	switch runtime {
	case "runc", RuncRuntime:
		return RuncShim
	case "watch", WatchRuntime:
		return WatchShim
	}
	return runtime
}

// mountsUnder returns the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		fields := strings.Fields(string(line))
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// unescapeMount decodes the octal escapes (\040 etc.) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
