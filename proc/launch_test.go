package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

const launchHelperEnv = "WATCH_TEST_LAUNCH"

// TestLaunchHelper is not a test: run as a child by the tests below, it
// plays runc for launch. It sends a pidfd of the target process over the
// socket and writes the target's pid to the pid file ("-": none), either
// sending first ("now") or connecting, writing the pid file and sending
// only after a delay ("late"); then it writes the done file.
func TestLaunchHelper(t *testing.T) {
	var sock, pidFile, mode, done string
	var target int
	var delay time.Duration
	if _, err := fmt.Sscan(os.Getenv(launchHelperEnv), &sock, &target, &pidFile, &mode, &delay, &done); err != nil {
		t.Skip("helper process only")
	}
	defer os.WriteFile(done, nil, 0o644)
	pidfd, err := unix.PidfdOpen(target, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if mode == "late" {
		writePidFile(t, pidFile, target)
		time.Sleep(delay)
	}
	// Fails for "late" once the shim closed the socket: that is fine.
	if mode != "nosend" {
		_ = unix.Sendmsg(fd, []byte("pidfd"), unix.UnixRights(pidfd), nil, 0)
	}
	if mode == "now" {
		writePidFile(t, pidFile, target)
	}
}

func writePidFile(t *testing.T, path string, pid int) {
	if path == "-" {
		return
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// launchFixture is a container whose runc is the helper above, a target
// process for it to report, and the exit monitor launch needs.
type launchFixture struct {
	c      *Container
	target *exec.Cmd
	dir    string
}

func newLaunchFixture(t *testing.T) *launchFixture {
	t.Helper()
	usePidfdDir(t)
	// The helper's runc "binary" is known to take --pidfd-socket.
	command := "launch-helper-" + t.Name()
	p := &runcProbe{known: true, ok: true}
	p.first.Do(func() {})
	runcProbes.Store(command, p)
	t.Cleanup(func() { runcProbes.Delete(command) })

	target := exec.Command("sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	return &launchFixture{c: &Container{ID: "c", mon: exitmon.New(nil), runc: &runc.Runc{Command: command}}, target: target, dir: t.TempDir()}
}

// run returns launch's run function: it starts the helper in mode, reports
// it to the socket as the runc monitor does, and returns once the helper
// has exited ("now") or written the pid file ("late").
func (f *launchFixture) run(t *testing.T, pidFile, mode string, delay time.Duration) (func(runc.PidfdSocket) error, string) {
	done := filepath.Join(f.dir, "done")
	return func(sock runc.PidfdSocket) error {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLaunchHelper$", "--", "--pidfd-socket", sock.Path())
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s %s %d %s", launchHelperEnv, sock.Path(), f.target.Process.Pid, pidFile, mode, int64(delay), done))
		if err := cmd.Start(); err != nil {
			return err
		}
		runcStarted(cmd)
		if mode != "late" {
			return cmd.Wait()
		}
		t.Cleanup(func() { cmd.Wait() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(pidFile); err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("helper wrote no pid file")
			}
		}
	}, done
}

// pidfdsOf counts this process's pidfds that refer to pid.
func pidfdsOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		b, _ := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if strings.Contains(string(b), "\nPid:\t"+strconv.Itoa(pid)+"\n") {
			n++
		}
	}
	return n
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

func wantSocketsGone(t *testing.T) {
	t.Helper()
	if ents, err := os.ReadDir(pidfdDir); err != nil || len(ents) != 0 {
		t.Errorf("pidfd socket directory after launch: %v (%v), want empty", ents, err)
	}
	pidfdSockets.Range(func(k, _ any) bool {
		t.Errorf("pidfd socket %v still registered", k)
		return true
	})
}

// runc succeeded but its pid file cannot be read: the process runc made is
// killed through the pidfd it sent, that pidfd is closed, the container is
// removed (undo), and the socket is gone.
func TestLaunchPidFileUnreadable(t *testing.T) {
	f := newLaunchFixture(t)
	before := pidfdsOf(t, f.target.Process.Pid)
	pidFile := filepath.Join(f.dir, "exec.pid")
	run, _ := f.run(t, "-", "now", 0)
	undone := 0
	_, err := f.c.launch(context.Background(), pidFile, run, func(context.Context) { undone++ })
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("launch without a pid file: %v, want not found", err)
	}
	if undone != 1 {
		t.Errorf("undo called %d times, want 1", undone)
	}
	if n := pidfdsOf(t, f.target.Process.Pid); n != before {
		t.Errorf("%d pidfds of the process open after launch failed, want %d: the received one leaked", n, before)
	}
	wantSocketsGone(t)
	exited := make(chan error, 1)
	go func() { exited <- f.target.Wait() }()
	select {
	case err := <-exited:
		if ws, ok := f.target.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("process ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the process runc made still runs after launch failed")
	}
}

// A pidfd that runc sends after launch stopped waiting for it is not left
// open: launch falls back to pidfd_open and holds exactly that one.
func TestLaunchLatePidfdClosed(t *testing.T) {
	f := newLaunchFixture(t)
	old := pidfdWait
	pidfdWait = 200 * time.Millisecond
	t.Cleanup(func() { pidfdWait = old })
	before := pidfdsOf(t, f.target.Process.Pid)
	pidFile := filepath.Join(f.dir, "exec.pid")
	run, done := f.run(t, pidFile, "late", 3*pidfdWait)
	l, err := f.c.launch(context.Background(), pidFile, run, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l.pidfd)
	f.c.mon.Cancel(l.tok)
	if l.pid != f.target.Process.Pid || l.pidfd < 0 {
		t.Fatalf("launched pid %d pidfd %d, want pid %d and a pidfd", l.pid, l.pidfd, f.target.Process.Pid)
	}
	waitFile(t, done)
	time.Sleep(100 * time.Millisecond) // a leak would happen now, in receive
	if n := pidfdsOf(t, f.target.Process.Pid); n != before+1 {
		t.Errorf("%d pidfds of the process open, want %d (launch's own): the late one leaked", n, before+1)
	}
	wantSocketsGone(t)
}
