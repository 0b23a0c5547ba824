package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SignalRestart restarts a containerd whose supervisor (not systemd)
// starts it again when it exits and keeps its pid in PidFile: it sends
// SIGTERM to that pid, waits until the process is gone, then until
// PidFile names another live process and Socket accepts connections.
// The installer must see the host's pids (the DaemonSet's hostPID).
type SignalRestart struct {
	PidFile  string // host path
	Socket   string // containerd's gRPC socket, host path
	HostRoot string
}

func (s *SignalRestart) String() string { return "signal:" + s.PidFile }

// Restart signals and waits as described on SignalRestart.
func (s *SignalRestart) Restart(ctx context.Context) error {
	old, err := readPid(filepath.Join(s.HostRoot, s.PidFile))
	if err != nil {
		return err
	}
	if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal containerd (pid %d): %w", old, err)
	}
	if err := poll(ctx, "containerd (pid "+strconv.Itoa(old)+") to exit", func() bool { return !alive(old) }); err != nil {
		return err
	}
	return poll(ctx, "a new containerd to serve", func() bool {
		pid, err := readPid(filepath.Join(s.HostRoot, s.PidFile))
		return err == nil && pid != old && alive(pid) && s.serving()
	})
}

// serving reports whether containerd's socket accepts a connection.
func (s *SignalRestart) serving() bool {
	c, err := net.DialTimeout("unix", filepath.Join(s.HostRoot, s.Socket), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func readPid(file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", file, data)
	}
	return pid, nil
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which ends at the last ')'.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// poll waits until cond holds or ctx ends.
func poll(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
