package shim

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
)

// socketDir holds shim sockets, as for every containerd shim.
const socketDir = "/run/containerd/s"

// socketAddress is the group's socket: a hash of containerd's address, the
// namespace and the group, so every member of a pod finds the same one.
func socketAddress(containerdAddress, ns, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(containerdAddress, ns, group)))
	return fmt.Sprintf("unix://%s/%x", socketDir, d)
}

func socketPath(addr string) string { return strings.TrimPrefix(addr, "unix://") }

// newServer is the ttrpc server of the task API and of everything else the
// shim serves on its socket (the inspect endpoint of `counters` and
// `stacks`): it completes a connection only from a peer with the shim's
// own effective uid and gid (SO_PEERCRED), as containerd's stock shims do,
// so file modes are not the only guard.
func newServer() (*ttrpc.Server, error) {
	return ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
}

// newSocket listens on addr (unix://PATH or PATH): the socket owner-only
// (0600), its directory created owner-only (0700) when missing.
func newSocket(addr string) (*net.UnixListener, error) {
	path := socketPath(addr)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, err
	}
	return l.(*net.UnixListener), nil
}

func removeSocket(addr string) error {
	err := os.Remove(socketPath(addr))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func addrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

// canConnect reports whether a server accepts connections on addr.
func canConnect(addr string) bool {
	c, err := net.DialTimeout("unix", socketPath(addr), 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// adjustOOMScore gives the server containerd's OOM score + 1, so the kernel
// prefers killing a shim to killing containerd.
func adjustOOMScore(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", os.Getppid()))
	if err != nil {
		return err
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	if score >= 1000 {
		return nil
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(score+1)), 0)
}
