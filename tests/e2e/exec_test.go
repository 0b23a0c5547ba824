//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestScenarioExecExitCodes: an exec returns its exit code, and 50
// concurrent execs in one container each return their own.
func TestScenarioExecExitCodes(t *testing.T) {
	forEach(t, execExitCodes)
}

func execExitCodes(t *testing.T, c *harness.Containerd, rt runtime) {
	events := subscribe(t, c)
	s := newScenario(t, c, rt)
	s.run("x", "sleep", "600")
	init := s.waitStatus("x", tasktypes.Status_RUNNING)
	_, err := c.Ctr("tasks", "exec", "--exec-id", "e1", "x", "sh", "-c", "exit 4")
	if code := harness.ExitCode(err); code != 4 {
		t.Fatalf("exec e1 exit code %d, want 4 (err %v)", code, err)
	}
	const n = 50
	codes := make([]int, n+1)
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := c.Ctr("tasks", "exec", "--exec-id", fmt.Sprintf("e%d", i+1), "x",
				"sh", "-c", fmt.Sprintf("exit %d", i%256))
			codes[i], errs[i] = harness.ExitCode(err), err
		}(i)
	}
	wg.Wait()
	t.Logf("%s: %d concurrent execs took %s", rt.Handler, n, time.Since(start).Round(time.Millisecond))
	for i := 1; i <= n; i++ {
		if codes[i] != i%256 {
			t.Errorf("exec e%d exit code %d, want %d (err %v)", i+1, codes[i], i%256, errs[i])
		}
	}
	if p := s.get("x"); p.Status != tasktypes.Status_RUNNING || p.Pid != init.Pid {
		t.Errorf("init after execs: %s pid %d, want RUNNING pid %d", p.Status, p.Pid, init.Pid)
	}
	if pids := s.pids("x"); len(pids) != 1 {
		t.Errorf("pids after all execs exited: %v, want only init", pids)
	}
	// Each exec's exit event carries its own id and status, once.
	exits := map[string][]uint32{}
	timeout := time.After(3 * time.Second)
drain:
	for {
		select {
		case e := <-events:
			if e.Topic == "/tasks/exit" && e.ContainerID == "x" {
				exits[e.ID] = append(exits[e.ID], e.ExitStatus)
			}
		case <-timeout:
			break drain
		}
	}
	if got := exits["e1"]; len(got) != 1 || got[0] != 4 {
		t.Errorf("exit events of e1: %v, want [4]", got)
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("e%d", i+1)
		if got := exits[id]; len(got) != 1 || got[0] != uint32(i%256) {
			t.Errorf("exit events of %s: %v, want [%d]", id, got, i%256)
		}
	}
	if len(exits) != n+1 {
		t.Errorf("exit events for %d processes, want %d: %v", len(exits), n+1, exits)
	}
}

// TestScenarioExecTTY: a TTY exec sees the size of ctr's terminal
// (ResizePty at start) and a later ResizePty; CloseIO ends a cat reading
// stdin.
func TestScenarioExecTTY(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("skipping: script (util-linux) missing")
	}
	forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
		s := newScenario(t, c, rt)
		s.run("x", "sleep", "600")
		s.waitStatus("x", tasktypes.Status_RUNNING)

		// ctr resizes the exec's pty to its own terminal (40x100) at start.
		out, err := s.ttyExec("tty1", nil, "sleep 1; stty size")
		if err != nil || !strings.Contains(out, "40 100") {
			t.Errorf("tty1 stty size: %q (err %v), want 40 100", out, err)
		}

		// A ResizePty during the exec changes what the process sees.
		resized := make(chan error, 1)
		out, err = s.ttyExec("tty2", func() {
			time.Sleep(1500 * time.Millisecond)
			ctx, cancel := context.WithTimeout(c.NSContext(context.Background()), 10*time.Second)
			defer cancel()
			_, err := s.tc.ResizePty(ctx, &tasks.ResizePtyRequest{ContainerID: "x", ExecID: "tty2", Width: 123, Height: 45})
			resized <- err
		}, "sleep 4; stty size")
		if rerr := <-resized; rerr != nil {
			t.Errorf("ResizePty tty2: %v", rerr)
		}
		if err != nil || !strings.Contains(out, "45 123") {
			t.Errorf("tty2 stty size after ResizePty: %q (err %v), want 45 123", out, err)
		}

		s.closeIO()
	})
}

// ttyExec runs `ctr tasks exec -t --exec-id id x sh -c script` inside
// script(1) on a 40x100 terminal; during runs concurrently when not nil.
func (s *scenario) ttyExec(id string, during func(), script string) (string, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctr := s.c.CtrCommand(ctx, "tasks", "exec", "-t", "--exec-id", id, "x", "sh", "-c", "'"+script+"'")
	cmd := exec.CommandContext(ctx, "script", "-qec", "stty cols 100 rows 40; "+strings.Join(ctr.Args, " "), "/dev/null")
	cmd.Env = ctr.Env
	stdin, err := cmd.StdinPipe() // kept open so script does not send EOF
	if err != nil {
		return "", err
	}
	defer stdin.Close()
	var outBuf strings.Builder
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	if during != nil {
		go during()
	}
	err = cmd.Wait()
	return outBuf.String(), err
}

// closeIO runs a cat exec through ctr, whose stdin is a pipe: cat keeps
// running while the pipe is open; when it closes, ctr closes its end of the
// stdin fifo and calls CloseIO, and cat must see EOF and exit 0 (the shim
// holds the fifo open until CloseIO).
func (s *scenario) closeIO() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := s.c.CtrCommand(ctx, "tasks", "exec", "--exec-id", "cat1", "x", "cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var outBuf strings.Builder
	cmd.Stdout = &outBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	io.WriteString(stdin, "hello-stdin\n")
	select {
	case err := <-done:
		t.Fatalf("cat exited with stdin open: %v: %s", err, outBuf.String())
	case <-time.After(2 * time.Second):
	}
	if n := len(s.pids("x")); n != 2 {
		t.Errorf("pids with cat running: %d, want 2", n)
	}
	stdin.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cat after stdin closed: %v", err)
		}
		if !strings.Contains(outBuf.String(), "hello-stdin") {
			t.Errorf("cat output %q, want hello-stdin", outBuf.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("cat still running 10s after stdin closed (CloseIO)")
	}
}
