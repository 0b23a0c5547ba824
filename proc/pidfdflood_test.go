package proc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const floodHelperEnv = "WATCH_TEST_PIDFD_FLOOD"

// flood is what a flooder was told: where, how many threads, how many
// connections as fast as it can (burst) before it says it is ready, and the
// pause between connections after that.
type flood struct {
	path    string
	threads int
	burst   int
	pause   time.Duration
}

// floodCounts is what a flooder reports: connections made, refused for a
// full backlog (EAGAIN), refused otherwise (EACCES for another user).
type floodCounts struct {
	ready                     bool
	ok, backlogFull, otherErr int64
}

// TestPidfdFloodHelper is not a test: run as a child by the tests below, it
// connects to a pidfd socket in a loop until killed, closing each
// connection, as a process that read the socket's name from /proc/net/unix
// would, and reports its counts to a file.
func TestPidfdFloodHelper(t *testing.T) {
	f, out, ok := floodFromEnv()
	if !ok {
		t.Skip("helper process only")
	}
	var n, full, other, attempts atomic.Int64
	var ready atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < f.threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: f.path, Net: "unix"})
				switch {
				case err == nil:
					n.Add(1)
					c.Close()
				case errors.Is(err, syscall.EAGAIN):
					full.Add(1)
				default:
					other.Add(1)
				}
				if attempts.Add(1) >= int64(f.burst) {
					ready.Store(true)
					time.Sleep(f.pause)
				}
			}
		}()
	}
	for range time.Tick(10 * time.Millisecond) {
		b := fmt.Sprintf("%v %d %d %d", ready.Load(), n.Load(), full.Load(), other.Load())
		if os.WriteFile(out+".tmp", []byte(b), 0o644) == nil {
			os.Rename(out+".tmp", out)
		}
	}
}

func floodFromEnv() (f flood, out string, ok bool) {
	_, err := fmt.Sscan(os.Getenv(floodHelperEnv), &f.path, &f.threads, &f.burst, &f.pause, &out)
	return f, out, err == nil
}

// startFlooder starts a flooder process, as cred's user if cred is not
// nil, waits until it is ready and returns how to read its counts. It is
// killed at the end of the test.
func startFlooder(t *testing.T, f flood, cred *syscall.Credential) func() floodCounts {
	t.Helper()
	// Another user can neither run the test binary where go test keeps it
	// nor write to t.TempDir().
	dir, err := os.MkdirTemp("", "flood")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := os.Args[0]
	if cred != nil {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "flooder")
		copyFile(t, os.Args[0], bin)
	}
	out := filepath.Join(dir, "counts")
	cmd := exec.Command(bin, "-test.run=^TestPidfdFloodHelper$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d %s", floodHelperEnv, f.path, f.threads, f.burst, f.pause, out))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	counts := func() (c floodCounts) {
		b, _ := os.ReadFile(out)
		fmt.Sscan(string(b), &c.ready, &c.ok, &c.backlogFull, &c.otherErr)
		return c
	}
	for deadline := time.Now().Add(20 * time.Second); !counts().ready; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("flooder not ready: %+v", counts())
		}
	}
	return counts
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// receiveUnderFlood starts a flooder on a new socket, then the socket's
// runc, and reports whether runc's pidfd got through. With cue, runc is
// started before the flood and reported to the socket only after it, and
// connects right then.
func receiveUnderFlood(t *testing.T, f flood, cred *syscall.Credential, cue bool) (bool, floodCounts) {
	t.Helper()
	s, err := newPidfdSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := receiveAsync(s)
	var go_ func()
	if cue {
		go_ = startHelperOnCue(t, s)
	}
	f.path = s.Path()
	counts := startFlooder(t, f, cred)
	if cue {
		go_()
	} else {
		startHelper(t, s)
	}
	select {
	case fd := <-got:
		if fd < 0 {
			return false, counts()
		}
		if msg := readAll(t, fd); msg != "from helper" {
			t.Fatalf("received fd reads %q, want the helper's", msg)
		}
		return true, counts()
	case <-time.After(5 * time.Second):
		return false, counts()
	}
}

// A flood that arrives before runc's pid is known (more connections than a
// backlog holds, then one every millisecond) does not keep runc's pidfd
// out when runc connects as soon as its pid is known: the socket accepts
// and drops connections as they come, never waiting on one of them for
// runc's pid, and does not log each one. (A flooder of the shim's own user
// that outpaces the accept loop can still fill the backlog; only the
// directory's permissions keep other users out, see the next test.)
func TestPidfdSocketKeepsAcceptingUnderFlood(t *testing.T) {
	usePidfdDir(t)
	for trial := 0; trial < 3; trial++ {
		f := flood{threads: 1, burst: 6000, pause: time.Millisecond}
		if ok, c := receiveUnderFlood(t, f, nil, true); !ok {
			t.Fatalf("trial %d: runc's pidfd did not get through the flood (flooder: %+v)", trial, c)
		}
	}
}

// Another user on the node (or a container without the host's /run) that
// learnt the socket's name cannot connect to it at all, however hard it
// tries, so it cannot fill its backlog.
func TestPidfdSocketUnreachableByOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the flooder as another user")
	}
	usePidfdDir(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	for trial := 0; trial < 4; trial++ {
		f := flood{threads: 4, burst: 2000}
		ok, c := receiveUnderFlood(t, f, nobody, false)
		if c.ok != 0 || c.backlogFull != 0 {
			t.Errorf("trial %d: another user connected %d times, found the backlog full %d times", trial, c.ok, c.backlogFull)
		}
		if !ok {
			t.Fatalf("trial %d: runc's pidfd did not get through (flooder: %+v)", trial, c)
		}
	}
}
