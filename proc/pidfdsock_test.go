package proc

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const pidfdHelperEnv = "WATCH_TEST_PIDFD_SOCKET"

// TestPidfdSocketHelper is not a test: run as a child by the tests below,
// it plays runc's part of --pidfd-socket, sending the read end of a pipe
// that holds its pid's name.
func TestPidfdSocketHelper(t *testing.T) {
	name := os.Getenv(pidfdHelperEnv)
	if name == "" {
		t.Skip("helper process only")
	}
	if os.Getenv(pidfdHelperEnv+"_CUE") != "" {
		os.Stdin.Read(make([]byte, 1))
	}
	if err := sendPipe(name, "from helper"); err != nil {
		t.Fatal(err)
	}
}

// sendPipe connects to the socket name and sends it the read end of a pipe
// holding msg, as runc sends a pidfd.
func sendPipe(name, msg string) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	if _, err := unix.Write(p[1], []byte(msg)); err != nil {
		return err
	}
	unix.Close(p[1])
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _, err = conn.WriteMsgUnix([]byte("pidfd"), unix.UnixRights(p[0]), nil)
	return err
}

// startHelper starts this test binary as the process runc would be, with
// --pidfd-socket on its command line as go-runc puts it there, and reports
// it to the socket as the runc monitor does.
func startHelper(t *testing.T, s *pidfdSocket) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPidfdSocketHelper$", "--", "--pidfd-socket", s.Path())
	cmd.Env = append(os.Environ(), pidfdHelperEnv+"="+s.Path())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	runcStarted(cmd)
}

// startHelperOnCue starts the helper as startHelper does but does not
// report it to the socket yet: cue does, and lets the helper connect at
// once.
func startHelperOnCue(t *testing.T, s *pidfdSocket) (cue func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPidfdSocketHelper$", "--", "--pidfd-socket", s.Path())
	cmd.Env = append(os.Environ(), pidfdHelperEnv+"="+s.Path(), pidfdHelperEnv+"_CUE=1")
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); _ = cmd.Wait() })
	return func() {
		runcStarted(cmd)
		w.Write([]byte{1})
	}
}

// usePidfdDir points the pidfd sockets at a new private directory for the
// test (short: a socket path has at most 107 bytes).
func usePidfdDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pfd")
	if err != nil {
		t.Fatal(err)
	}
	old := pidfdDir
	pidfdDir = filepath.Join(dir, "pidfd")
	pidfdDirChecked.Store(false)
	t.Cleanup(func() {
		pidfdDir = old
		pidfdDirChecked.Store(false)
		os.RemoveAll(dir)
	})
	return pidfdDir
}

// newTestSocket is newPidfdSocket in a directory of the test's own.
func newTestSocket(t *testing.T) *pidfdSocket {
	t.Helper()
	usePidfdDir(t)
	s, err := newPidfdSocket()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func readAll(t *testing.T, fd int) string {
	t.Helper()
	f := os.NewFile(uintptr(fd), "received")
	defer f.Close()
	b := make([]byte, 64)
	n, _ := f.Read(b)
	return string(b[:n])
}

func receiveAsync(s *pidfdSocket) <-chan int {
	c := make(chan int, 1)
	go func() { c <- s.receive() }()
	return c
}

func TestPidfdSocketReceivesFromItsRunc(t *testing.T) {
	s := newTestSocket(t)
	// A socket file in a directory of the shim's own: no other user can
	// connect to it.
	if filepath.Dir(s.Path()) != pidfdDir {
		t.Fatalf("socket %q is not in %s", s.Path(), pidfdDir)
	}
	if fi, err := os.Stat(pidfdDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Lstat(s.Path()); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file: %v", err)
	}
	got := receiveAsync(s)
	startHelper(t, s)
	wantHelperFd(t, got)
}

// wantHelperFd waits for receive's result and checks it is the helper's
// pipe, close-on-exec: children the shim starts later (runc, logging
// binaries) must not inherit it.
func wantHelperFd(t *testing.T, got <-chan int) {
	t.Helper()
	select {
	case fd := <-got:
		if fd < 0 {
			t.Fatal("receive returned no fd")
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("received fd flags %#x (%v): not close-on-exec", flags, err)
		}
		if msg := readAll(t, fd); msg != "from helper" {
			t.Fatalf("received fd reads %q, want the helper's", msg)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no fd received")
	}
}

func TestPidfdSocketDropsOtherProcesses(t *testing.T) {
	s := newTestSocket(t)
	got := receiveAsync(s)
	// This process is not the runc started with s: its fd must be dropped,
	// before and after the runc's pid is known.
	if err := sendPipe(s.Path(), "from a stranger"); err != nil {
		t.Fatal(err)
	}
	startHelper(t, s)
	// Dropped at once, or refused once the helper's fd was taken.
	_ = sendPipe(s.Path(), "from a stranger")
	wantHelperFd(t, got)
}

func TestPidfdSocketCloseEndsReceive(t *testing.T) {
	s := newTestSocket(t)
	got := receiveAsync(s)
	// A connection whose runc never starts waits for it; Close ends that
	// wait too.
	if err := sendPipe(s.Path(), "from a stranger"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case fd := <-got:
		if fd != -1 {
			t.Fatalf("receive after Close = %d, want -1", fd)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("receive still blocked after Close")
	}
	if _, ok := pidfdSockets.Load(s.Path()); ok {
		t.Fatal("closed socket still registered")
	}
	if _, err := os.Lstat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("closed socket's file: %v, want it removed", err)
	}
	// Close twice is fine.
	s.Close()
}

func TestRuncStartedIgnoresOtherCommands(t *testing.T) {
	s := newTestSocket(t)
	for _, args := range [][]string{
		{"runc", "exec", "--detach", "id"},
		{"runc", "exec", "--pidfd-socket", "@another", "id"},
		{"runc", "exec", "--pidfd-socket"},
	} {
		runcStarted(&exec.Cmd{Args: args, Process: &os.Process{Pid: 42}})
	}
	select {
	case pid := <-s.runc:
		t.Fatalf("socket was told pid %d by a command that does not name it", pid)
	default:
	}
	runcStarted(&exec.Cmd{Args: []string{"runc", "exec", "--pidfd-socket", s.Path(), "id"}, Process: &os.Process{Pid: 42}})
	if pid := <-s.runc; pid != 42 {
		t.Fatalf("pid %d, want 42", pid)
	}
}

// The socket is made only in a directory of the shim's own: not through a
// symlink, not in another user's directory; a looser mode is tightened.
func TestPidfdSocketDirMustBePrivate(t *testing.T) {
	dir := usePidfdDir(t)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	s, err := newPidfdSocket()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}

	link := dir + "-link"
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	pidfdDir = link
	pidfdDirChecked.Store(false)
	if s, err := newPidfdSocket(); err == nil {
		s.Close()
		t.Fatal("socket made in a symlinked directory")
	}

	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another user")
	}
	pidfdDir = dir
	pidfdDirChecked.Store(false)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if s, err := newPidfdSocket(); err == nil {
		s.Close()
		t.Fatal("socket made in another user's directory")
	}
}
