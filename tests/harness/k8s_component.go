//go:build e2e

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// component is one process of the cluster (etcd, an API server, a
// kubelet...), started in its own process group with its output in
// <logs>/<name>.log.
type component struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	logPath string
	exited  chan struct{}
}

// startComponent starts bin with args; env is added to the caller's.
func startComponent(logDir, name, bin string, args []string, env ...string) (*component, error) {
	logPath := filepath.Join(logDir, name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, log: log, logPath: logPath, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(c.exited) }()
	return c, nil
}

// running reports whether the process has not exited.
func (c *component) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and waits
// for the process to be reaped.
func (c *component) stop(grace time.Duration) {
	pgid := c.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.exited
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // helpers it left in its group
	c.log.Close()
}

// exitError describes a component that exited, with its log's tail.
func (c *component) exitError() error {
	return fmt.Errorf("%s exited (%s): %s", c.name, c.cmd.ProcessState, tailFile(c.logPath, 15))
}

// tailFile returns the last n lines of path, each capped at maxLogLine.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > maxLogLine {
			lines[i] = l[:maxLogLine] + " ..."
		}
	}
	return strings.Join(lines, "\n")
}
