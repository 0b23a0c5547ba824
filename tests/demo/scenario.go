//go:build e2e

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// criStatus is the part of `crictl inspect` the demo reads.
type criStatus struct {
	Status struct {
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

func (d *demo) inspect(id string) (criStatus, error) {
	var st criStatus
	out, err := d.c.Crictl("inspect", "--output", "json", id)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// script is each container's command: it runs until SIGTERM, then exits
// with code.
func script(code int) string {
	return fmt.Sprintf("trap 'exit %d' TERM; sleep 600 & wait", code)
}

// startPods runs one pod per runtime, each with the containers.
func (d *demo) startPods() {
	d.pods = map[string]string{}
	d.ids = map[string]map[string]string{}
	for _, rt := range runtimes {
		pod := harness.Pod{Name: podName(rt.handler)}
		podID, err := d.c.RunPod(pod, rt.handler)
		if err != nil {
			d.r.Fatalf("%v", err)
		}
		d.pods[rt.handler], d.ids[rt.handler] = podID, map[string]string{}
		for _, ct := range containers {
			id, err := d.c.CreateContainer(podID, pod, harness.Container{Name: ct.name, Command: harness.Sh(script(ct.code))})
			if err != nil {
				d.r.Fatalf("%v", err)
			}
			if _, err := d.c.Crictl("start", id); err != nil {
				d.r.Fatalf("%v", err)
			}
			d.ids[rt.handler][ct.name] = id
		}
	}
}

func podName(handler string) string {
	if handler == "runc" {
		return "stock"
	}
	return handler
}

// exitWhileDown stops containerd, sends every container SIGTERM, waits
// until each has exited (its process is gone from /proc: its shim reaped
// it) and keeps containerd down for down.
func (d *demo) exitWhileDown(down time.Duration) {
	pids := map[int]string{}
	for _, rt := range runtimes {
		for name, id := range d.ids[rt.handler] {
			st, err := d.inspect(id)
			if err != nil || st.Info.Pid == 0 {
				d.r.Fatalf("container %s on %s: no pid (%v)", name, rt.handler, err)
			}
			pids[st.Info.Pid] = name + " on " + rt.handler
		}
	}
	if err := d.c.Stop(); err != nil {
		d.r.Fatalf("stop containerd: %v", err)
	}
	stopped := time.Now()
	for pid, what := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			d.r.Fatalf("SIGTERM %s (pid %d): %v", what, pid, err)
		}
	}
	deadline := stopped.Add(30 * time.Second)
	for len(livePids(pids)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := livePids(pids); len(left) > 0 {
		d.r.Fatalf("containers still running 30s after containerd stopped: %v", left)
	}
	d.detail("sent SIGTERM to the %d containers: all exited %s after containerd stopped", len(pids), time.Since(stopped).Round(100*time.Millisecond))
	time.Sleep(time.Until(stopped.Add(down)))
	d.detail("containerd was down for %s", time.Since(stopped).Round(100*time.Millisecond))
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func livePids(pids map[int]string) []string {
	var out []string
	for pid, what := range pids {
		if alive(pid) {
			out = append(out, what)
		}
	}
	return out
}

// printExits waits until CRI reports every container exited and prints,
// per container, the code it exited with and what each runtime reported.
func (d *demo) printExits() {
	right := map[string]int{}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "   container\texited with\t%s\t%s\n", runtimes[0].label, runtimes[1].label)
	for _, ct := range containers {
		row := []string{ct.name, fmt.Sprint(ct.code)}
		for _, rt := range runtimes {
			st := d.waitExited(d.ids[rt.handler][ct.name])
			row = append(row, fmt.Sprintf("%d %s", st.Status.ExitCode, st.Status.Reason))
			if st.Status.ExitCode == ct.code {
				right[rt.handler]++
			}
		}
		fmt.Fprintf(tw, "   %s\n", strings.Join(row, "\t"))
	}
	tw.Flush()
	var summary []string
	for _, rt := range runtimes {
		summary = append(summary, fmt.Sprintf("%s %d of %d", rt.label, right[rt.handler], len(containers)))
	}
	d.detail("true exit codes reported: %s", strings.Join(summary, ", "))
	if right[runtimes[0].handler] < len(containers) {
		d.detail("stock: after its restart containerd found exited tasks whose shim listed no")
		d.detail("pids, deleted them, and CRI could only report 255 (Unknown).")
	}
	if right[runtimes[1].handler] == len(containers) {
		d.detail("watch: its shim wrote each exit to the node log and reported it when containerd asked.")
	}
}

// waitExited polls CRI until container id is CONTAINER_EXITED (60 s).
func (d *demo) waitExited(id string) criStatus {
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := d.inspect(id)
		if err == nil && st.Status.State == "CONTAINER_EXITED" {
			return st
		}
		if time.Now().After(deadline) {
			d.r.Fatalf("container %s: state %q (%v) 60s after restart, want CONTAINER_EXITED", id, st.Status.State, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
