package installer

import (
	"context"
	"fmt"
	"strings"
)

// Restarter restarts containerd so that it reads its configuration
// again, returning once the new containerd serves (or the method cannot
// tell, see NoRestart). Running shims and containers are untouched by a
// containerd restart.
type Restarter interface {
	Restart(ctx context.Context) error
	String() string
}

// ParseRestart returns the Restarter of a --restart value:
//
//	systemd[:UNIT]   restart UNIT (containerd.service) through systemd's
//	                 D-Bus API and wait for the job
//	signal:PIDFILE   SIGTERM the pid in PIDFILE and wait until a new
//	                 containerd wrote its pid there and serves on socket;
//	                 for hosts where a supervisor other than systemd
//	                 restarts containerd when it exits
//	none             do not restart: the operator does
//
// hostRoot and socket are Options.HostRoot and containerd's socket (host
// path).
func ParseRestart(method, hostRoot, socket string) (Restarter, error) {
	name, arg, _ := strings.Cut(method, ":")
	switch name {
	case "systemd":
		if arg == "" {
			arg = "containerd.service"
		}
		return &SystemdRestart{Unit: arg, HostRoot: hostRoot}, nil
	case "signal":
		if arg == "" {
			return nil, fmt.Errorf("restart %q: signal needs a pid file: signal:PIDFILE", method)
		}
		return &SignalRestart{PidFile: arg, Socket: socket, HostRoot: hostRoot}, nil
	case "none":
		return NoRestart{}, nil
	}
	return nil, fmt.Errorf("restart %q: unknown method (systemd[:UNIT], signal:PIDFILE or none)", method)
}

// NoRestart leaves restarting containerd to the operator.
type NoRestart struct{}

// Restart does nothing.
func (NoRestart) Restart(context.Context) error { return nil }

func (NoRestart) String() string { return "none" }
