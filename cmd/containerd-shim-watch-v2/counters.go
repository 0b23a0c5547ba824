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

// inspect implements `containerd-shim-watch-v2 counters|stacks PID|ADDRESS`:
// it prints what a running shim's exit monitor has done, as JSON
// (counters), or the stacks of its goroutines (stacks).
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
