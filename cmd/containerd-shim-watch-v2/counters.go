package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// socketEnv matches shim.socketEnv: the server's own socket address.
const socketEnv = "WATCH_SHIM_SOCKET="

// targetHelp ends the usage of counters and stacks.
const targetHelp = `
PID is the pid of a shim server (the long-lived containerd-shim-watch-v2
process of a pod, as ps shows it); ADDRESS is its socket, unix:///... or an
absolute path. It must be run as the shim's user (root).
`

// inspectTarget implements `containerd-shim-watch-v2 counters|stacks
// PID|ADDRESS`: it prints what a running shim's exit monitor has done, as
// JSON (counters), or the stacks of its goroutines (stacks).
func inspectTarget(what string, args []string) error {
	target, err := parseTarget(args)
	if err != nil {
		return err
	}
	return inspect(what, target)
}

// parseTarget checks the one argument of counters and stacks: a positive
// pid or a socket address.
func parseTarget(args []string) (string, error) {
	if len(args) != 1 {
		return "", usageError(fmt.Sprintf("want one PID or ADDRESS, got %d arguments", len(args)))
	}
	a := args[0]
	if pid, err := strconv.Atoi(a); err == nil {
		if pid <= 0 {
			return "", usageError(fmt.Sprintf("PID %d is not a process id", pid))
		}
		return a, nil
	}
	if !strings.HasPrefix(a, "unix://") && !strings.HasPrefix(a, "/") {
		return "", usageError(fmt.Sprintf("%q is neither a PID nor a socket address (unix:///... or /...)", a))
	}
	return a, nil
}

// inspect dials the shim at target (a pid or an address) and prints its
// counters or its stacks.
func inspect(what, target string) error {
	addr, err := resolveAddress(target)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("unix", strings.TrimPrefix(addr, "unix://"), 5*time.Second)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if what == "stacks" {
		b, err := task.ReadStacks(ctx, client)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	c, err := task.ReadCounters(ctx, client)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// resolveAddress takes a shim socket address or a shim pid.
func resolveAddress(target string) (string, error) {
	pid, err := strconv.Atoi(target)
	if err != nil {
		return target, nil
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return "", err
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), socketEnv); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("process %d is not a watch shim server", pid)
}
