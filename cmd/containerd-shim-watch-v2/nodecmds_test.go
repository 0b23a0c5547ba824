package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// nodeLogT writes a pod's lifecycle to a log in a temporary directory that
// the binary's runs use.
func nodeLogT(t *testing.T) *nodelog.Writer {
	dir := filepath.Join(t.TempDir(), "log")
	t.Setenv(nodelog.DirEnv, dir)
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	pod := nodelog.Record{Namespace: "k8s.io", SandboxID: "s1", PodName: "web", PodNamespace: "default", PodUID: "u1"}
	code3, code0 := uint32(3), uint32(0)
	for _, r := range []nodelog.Record{
		{Event: "created", Kind: "sandbox", ContainerID: "s1", Pid: 10},
		{Event: "started", Kind: "sandbox", ContainerID: "s1", Pid: 10},
		{Event: "created", Kind: "container", ContainerID: "c1", ContainerName: "app", Image: "busybox", Pid: 11},
		{Event: "started", Kind: "container", ContainerID: "c1", Pid: 11},
		{Event: "exec_added", Kind: "exec", ContainerID: "c1", ExecID: "e1"},
		{Event: "exec_started", Kind: "exec", ContainerID: "c1", ExecID: "e1", Pid: 12},
		{Event: "exited", Kind: "exec", ContainerID: "c1", ExecID: "e1", Pid: 12, ExitStatus: &code0},
		{Event: "deleted", Kind: "exec", ContainerID: "c1", ExecID: "e1"},
		{Event: "exited", Kind: "container", ContainerID: "c1", Pid: 11, ExitStatus: &code3},
	} {
		rec := pod
		rec.Event, rec.Kind, rec.ContainerID, rec.ExecID, rec.Pid, rec.ExitStatus = r.Event, r.Kind, r.ContainerID, r.ExecID, r.Pid, r.ExitStatus
		rec.ContainerName, rec.Image = r.ContainerName, r.Image
		if _, err := w.Append(&rec); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func TestPods(t *testing.T) {
	nodeLogT(t)
	r := runBinary(t, "pods", "-o", "json")
	var out struct {
		Cursor string           `json:"cursor"`
		Items  []nodelog.Record `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
		t.Fatalf("pods -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(out.Items) != 2 || out.Items[1].ContainerID != "c1" || *out.Items[1].ExitStatus != 3 || out.Items[1].Image != "busybox" || !strings.HasSuffix(out.Cursor, ".9") {
		t.Fatalf("pods -o json: %s", r.stdout)
	}
	r = runBinary(t, "pods")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.Contains(lines[2], "exited") || !strings.Contains(lines[2], " 3 ") || !strings.Contains(lines[2], "web") {
		t.Fatalf("pods: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// runWatch runs `watch args`, reads n lines and interrupts it.
func runWatch(t *testing.T, n int, args ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"watch"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	for len(lines) < n && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch %q: %v", args, err)
	}
	return lines
}

func TestWatch(t *testing.T) {
	w := nodeLogT(t)
	lines := runWatch(t, 3, "-o", "json")
	var first, marker map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[2]), &marker)
	if first["event"] != "started" || first["kind"] != "sandbox" || first["pod_uid"] != "u1" || marker["event"] != "initial_state_done" {
		t.Fatalf("watch -o json:\n%s", strings.Join(lines, "\n"))
	}
	w.Append(&nodelog.Record{Event: "deleted", Kind: "container", Namespace: "k8s.io", ContainerID: "c1"})
	cursor := w.LogID() + ".7"
	lines = runWatch(t, 3, "-o", "json", "--since", cursor)
	var got []string
	for _, l := range lines {
		var m map[string]any
		json.Unmarshal([]byte(l), &m)
		got = append(got, m["cursor"].(string)[33:]+" "+m["event"].(string)+" "+m["kind"].(string))
	}
	if strings.Join(got, ",") != "8 deleted exec,9 exited container,10 deleted container" {
		t.Fatalf("watch --since %s: %q", cursor, got)
	}
	r := runBinary(t, "watch", "--since", "garbage")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid cursor") {
		t.Fatalf("watch --since garbage: exit %d, %s", r.code, r.stderr)
	}
}
