package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// SystemdRestart restarts a systemd unit over systemd's private D-Bus
// socket (/run/systemd/private, root only), which needs no dbus-daemon
// and works from a container that mounts the host's /run/systemd.
type SystemdRestart struct {
	Unit     string
	HostRoot string
}

func (s *SystemdRestart) String() string { return "systemd:" + s.Unit }

// Restart queues a restart job of the unit (mode "replace") and waits for
// its result, which must be "done".
func (s *SystemdRestart) Restart(ctx context.Context) error {
	conn, err := sdbus.NewConnection(func() (*dbus.Conn, error) { return s.dial(ctx) })
	if err != nil {
		if ctx.Err() != nil { // the dial or auth was cut by the deadline
			return fmt.Errorf("connect to systemd: %w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, s.Unit, "replace", done); err != nil {
		return fmt.Errorf("restart %s: %w", s.Unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("restart %s: job %s", s.Unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", s.Unit, ctx.Err())
	}
}

func (s *SystemdRestart) dial(ctx context.Context) (*dbus.Conn, error) {
	sock := filepath.Join(s.HostRoot, "/run/systemd/private")
	conn, err := dbus.Dial("unix:path="+sock, dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
