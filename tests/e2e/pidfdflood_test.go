//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

const pidfdFloodEnv = "WATCH_E2E_PIDFD_FLOOD"

// TestPidfdFloodHelperE2E is not a test: run as a child by
// TestPidfdSocketFloodedByAnotherUser as another user, it connects from 4
// threads in a loop to the latest socket name read from stdin, and writes
// how many connections succeeded and how many were tried.
func TestPidfdFloodHelperE2E(t *testing.T) {
	out := os.Getenv(pidfdFloodEnv)
	if out == "" {
		t.Skip("helper process only")
	}
	var name atomic.Value
	name.Store("")
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			name.Store(sc.Text())
		}
	}()
	var ok, tried atomic.Int64
	for i := 0; i < 4; i++ {
		go func() {
			for {
				n := name.Load().(string)
				if n == "" {
					time.Sleep(time.Millisecond)
					continue
				}
				tried.Add(1)
				if c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: n, Net: "unix"}); err == nil {
					ok.Add(1)
					c.Close()
				}
			}
		}()
	}
	for range time.Tick(20 * time.Millisecond) {
		b := fmt.Sprintf("%d %d", ok.Load(), tried.Load())
		if os.WriteFile(out+".tmp", []byte(b), 0o644) == nil {
			os.Rename(out+".tmp", out)
		}
	}
}

// TestPidfdSocketFloodedByAnotherUser: a local user who reads the shim's
// pidfd socket names from /proc/net/unix while containers are created and
// execs run, and connects to them in a loop, neither gets a connection nor
// makes a `runc create` or `runc exec` fail.
func TestPidfdSocketFloodedByAnotherUser(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	version := harness.Versions()[len(harness.Versions())-1]
	c := harness.Start(t, harness.Options{Version: version})
	names, counts := startPidfdFlooder(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seen atomic.Int64
	wg.Add(1)
	go func() { defer wg.Done(); feedPidfdNames(c.Dir, names, stop, &seen) }()
	defer func() { close(stop); wg.Wait() }()

	const containers, execs = 3, 20
	for i := 0; i < containers; i++ {
		id := fmt.Sprintf("flood%d", i)
		if _, err := c.Ctr("run", "-d", "--runtime", harness.WatchRuntime,
			"--annotation", "io.containerd.watch.v2.group=flood", harness.BusyboxImage, id, "sleep", "600"); err != nil {
			t.Fatalf("create %s under a flood: %v", id, err)
		}
	}
	for i := 0; i < execs; i++ {
		id := fmt.Sprintf("flood%d", i%containers)
		if _, err := c.Ctr("tasks", "exec", "--exec-id", fmt.Sprintf("e%d", i), id, "true"); err != nil {
			t.Fatalf("exec %d in %s under a flood: %v", i, id, err)
		}
	}
	ok, tried := counts()
	t.Logf("flooder: %d socket names fed, %d connections tried, %d made", seen.Load(), tried, ok)
	if seen.Load() == 0 || tried == 0 {
		t.Fatal("the flooder never saw a pidfd socket: the test proves nothing")
	}
	if ok != 0 {
		t.Fatalf("another user connected to the shim's pidfd sockets %d times", ok)
	}
}

// startPidfdFlooder starts the flooder as nobody; names is its stdin.
func startPidfdFlooder(t *testing.T) (names io.Writer, counts func() (ok, tried int64)) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pidfdflood")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "flooder") // nobody cannot run it where go test keeps it
	if err := copyExecutable(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "counts")
	cmd := exec.Command(bin, "-test.run=^TestPidfdFloodHelperE2E$")
	cmd.Env = append(os.Environ(), pidfdFloodEnv+"="+out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return w, func() (ok, tried int64) {
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(out)
		fmt.Sscan(string(b), &ok, &tried)
		return ok, tried
	}
}

func copyExecutable(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// feedPidfdNames writes to names every pidfd socket name in /proc/net/unix
// (path or abstract) that a shim of containerd dir listens on, until stop.
// Only this test's shims are attacked: the machine runs other tests'.
func feedPidfdNames(dir string, names io.Writer, stop <-chan struct{}, seen *atomic.Int64) {
	last := ""
	for {
		select {
		case <-stop:
			return
		default:
		}
		inodes := shimSocketInodes(dir)
		for _, n := range pidfdSocketNames(inodes) {
			if n != last {
				last = n
				seen.Add(1)
				fmt.Fprintln(names, n)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// shimSocketInodes returns the inodes of the sockets open in the watch
// shims of containerd dir.
func shimSocketInodes(dir string) map[string]bool {
	inodes := map[string]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if !strings.Contains(string(cmd), "containerd-shim-watch-v2") {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if !strings.Contains(string(cmd), dir) && !strings.Contains(string(env), dir) {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			l, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	return inodes
}

// pidfdSocketNames returns the names in /proc/net/unix of the listening
// pidfd sockets among inodes, as Go spells them (abstract ones with @).
func pidfdSocketNames(inodes map[string]bool) []string {
	b, _ := os.ReadFile("/proc/net/unix")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// Num RefCount Protocol Flags Type St Inode Path
		if len(f) < 8 || !inodes[f[6]] || !strings.Contains(f[7], "containerd-shim-watch-v2/pidfd/") {
			continue
		}
		out = append(out, f[7])
	}
	return out
}
