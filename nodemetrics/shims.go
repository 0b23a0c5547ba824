package nodemetrics

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// ShimName is the shim's binary name, as /proc shows its executable.
const ShimName = "containerd-shim-watch-v2"

// socketEnv is the shim server's own socket address (shim.socketEnv).
const socketEnv = "WATCH_SHIM_SOCKET"

// shimProc is one running shim server.
type shimProc struct {
	pid       int
	id        string // the task it was started for: the pod's sandbox in CRI
	namespace string // containerd namespace
	address   string // unix:///... as the shim sees it
}

// findShims returns the shim servers in procDir writing the log logDir.
// Processes that end while being looked at are skipped.
func findShims(procDir, logDir string) ([]shimProc, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("find shims: %w", err)
	}
	var out []shimProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if s, ok := shimAt(filepath.Join(procDir, e.Name()), logDir); ok {
			s.pid = pid
			out = append(out, s)
		}
	}
	return out, nil
}

// shimAt reports whether the process at dir (/proc/PID) is a shim server
// writing logDir, and which.
func shimAt(dir, logDir string) (shimProc, bool) {
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != ShimName {
		return shimProc{}, false
	}
	env, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return shimProc{}, false
	}
	vars := map[string]string{}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			vars[k] = v
		}
	}
	shimLog := vars[nodelog.DirEnv]
	if shimLog == "" {
		shimLog = nodelog.DefaultDir
	}
	if vars[socketEnv] == "" || filepath.Clean(shimLog) != filepath.Clean(logDir) {
		return shimProc{}, false
	}
	s := shimProc{address: vars[socketEnv]}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	s.id, s.namespace = flagValue(args, "id"), flagValue(args, "namespace")
	return s, true
}

// flagValue returns the value of -name VALUE (or --name, -name=VALUE) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// readCounters asks the shim listening at address (under hostRoot) for its
// counters, over the same ttrpc endpoint as `containerd-shim-watch-v2
// counters`.
func readCounters(ctx context.Context, hostRoot, address string) (task.Counters, error) {
	path := filepath.Join(hostRoot, strings.TrimPrefix(address, "unix://"))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return task.Counters{}, fmt.Errorf("dial shim: %w", err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	c, err := task.ReadCounters(ctx, client)
	if err != nil {
		return task.Counters{}, fmt.Errorf("shim counters: %w", err)
	}
	return c, nil
}

// shimTimeout bounds asking one shim.
const shimTimeout = 2 * time.Second
