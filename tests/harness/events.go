//go:build e2e

package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Event is one event printed by `ctr events`.
type Event struct {
	Timestamp   string // as printed by ctr
	Namespace   string
	Topic       string // e.g. /tasks/exit
	ContainerID string
	ID          string
	ExecID      string
	Pid         uint32
	ExitStatus  uint32
	ExitedAt    time.Time
	Payload     string // the event as JSON
}

type eventPayload struct {
	ContainerID string `json:"container_id"`
	ID          string `json:"id"`
	ExecID      string `json:"exec_id"`
	Pid         uint32 `json:"pid"`
	ExitStatus  uint32 `json:"exit_status"`
	ExitedAt    *struct {
		Seconds int64 `json:"seconds"`
		Nanos   int64 `json:"nanos"`
	} `json:"exited_at"`
	Name string `json:"name"`
}

// probePrefix names the namespaces Events creates to know it is subscribed.
const probePrefix = "harness-probe-"

// Events runs `ctr events` until ctx ends and returns its parsed events. It
// returns once the subscription is live, so no later event is missed. The
// channel closes when ctr exits.
func (c *Containerd) Events(ctx context.Context) (<-chan Event, error) {
	cmd := exec.CommandContext(ctx, c.bins.ctr, c.ctrArgs("default", "events")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ctr events: %w", err)
	}
	raw := make(chan Event, 1024)
	go func() {
		defer close(raw)
		scanEvents(bufio.NewScanner(stdout), raw)
		cmd.Wait()
	}()
	out := make(chan Event, 1024)
	if err := c.awaitProbe(ctx, raw); err != nil {
		return nil, fmt.Errorf("ctr events: %w", err)
	}
	go forwardEvents(raw, out)
	return out, nil
}

// awaitProbe creates a probe namespace every 500 ms until ctr events
// reports one, then removes the probes.
func (c *Containerd) awaitProbe(ctx context.Context, raw <-chan Event) error {
	var probes []string
	defer func() {
		for _, name := range probes {
			c.CtrNS("default", "namespaces", "remove", name)
		}
	}()
	timeout := time.After(30 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		name := fmt.Sprintf("%s%d", probePrefix, time.Now().UnixNano())
		if _, err := c.CtrNS("default", "namespaces", "create", name); err != nil {
			return err
		}
		probes = append(probes, name)
		if err := waitProbe(ctx, raw, tick.C, timeout); err != errRetry {
			return err
		}
	}
}

var errRetry = errors.New("retry")

// waitProbe returns nil once raw reports a probe, errRetry at the next tick.
func waitProbe(ctx context.Context, raw <-chan Event, tick <-chan time.Time, timeout <-chan time.Time) error {
	for {
		select {
		case e, ok := <-raw:
			if !ok {
				return fmt.Errorf("exited before subscribing")
			}
			if strings.Contains(e.Payload, probePrefix) {
				return nil
			}
		case <-tick:
			return errRetry
		case <-timeout:
			return fmt.Errorf("no probe event within 30s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func forwardEvents(raw <-chan Event, out chan<- Event) {
	defer close(out)
	for e := range raw {
		if !strings.Contains(e.Payload, probePrefix) {
			out <- e
		}
	}
}

func scanEvents(sc *bufio.Scanner, out chan<- Event) {
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if e, ok := ParseEvent(sc.Text()); ok {
			out <- e
		}
	}
}

// ParseEvent parses one line of `ctr events`:
// "<timestamp> <namespace> <topic> <json>".
func ParseEvent(line string) (Event, bool) {
	fields := strings.Fields(line)
	topicIdx := -1
	for i, f := range fields {
		if strings.HasPrefix(f, "/") && i > 0 {
			topicIdx = i
			break
		}
	}
	if topicIdx < 1 {
		return Event{}, false
	}
	e := Event{
		Timestamp: strings.Join(fields[:topicIdx-1], " "),
		Namespace: fields[topicIdx-1],
		Topic:     fields[topicIdx],
	}
	if i := strings.Index(line, " "+e.Topic+" "); i >= 0 {
		e.Payload = strings.TrimSpace(line[i+len(e.Topic)+2:])
	}
	var p eventPayload
	if json.Unmarshal([]byte(e.Payload), &p) == nil {
		e.ContainerID, e.ID, e.ExecID = p.ContainerID, p.ID, p.ExecID
		e.Pid, e.ExitStatus = p.Pid, p.ExitStatus
		if p.ExitedAt != nil {
			e.ExitedAt = time.Unix(p.ExitedAt.Seconds, p.ExitedAt.Nanos).UTC()
		}
	}
	return e, true
}
