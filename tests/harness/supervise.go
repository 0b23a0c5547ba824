//go:build e2e

package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// PidFile returns the file that holds the running containerd's pid,
// rewritten at every start (the pid file of a supervised service).
func (c *Containerd) PidFile() string { return filepath.Join(c.Dir, "containerd.pid") }

// ConfigPath returns containerd's main config file.
func (c *Containerd) ConfigPath() string { return c.configPath() }

// writePidFile replaces file with pid atomically: a reader sees the old
// pid or the new one.
func writePidFile(file string, pid int) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// supervisorDelay is the pause before a supervised restart, systemd's
// RestartSec: a containerd that fails at start is not restarted hot.
const supervisorDelay = 500 * time.Millisecond

// restartAfterExit starts containerd again after cmd exited, unless Stop
// or Restart stopped it (they clear c.cmd under c.mu before the exit is
// seen here) or the instance is being cleaned up. A start that fails
// leaves c.cmd on the dead process, whose own exit brings the next try.
func (c *Containerd) restartAfterExit(cmd *exec.Cmd) {
	c.mu.Lock()
	unexpected := c.cmd == cmd && !c.cleaned
	if unexpected {
		fmt.Fprintf(c.logFile, "harness supervisor: containerd exited (%s), restarting\n", c.cmd.ProcessState)
		c.logFile.Close()
		c.cmd, c.stopped = nil, true
	}
	c.mu.Unlock()
	if !unexpected {
		return
	}
	time.Sleep(supervisorDelay)
	if err := c.StartAgain(); err != nil {
		c.appendLog(fmt.Sprintf("harness supervisor: start containerd: %v", err))
	}
}

// appendLog adds a line to containerd's log.
func (c *Containerd) appendLog(line string) {
	f, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}
