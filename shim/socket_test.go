package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/task"
	taskapi "github.com/watchshim/containerd-shim-watch-v2/task/api"
)

// TestListenerSocketPath: the -socket path is owner-only, in a directory
// created owner-only, as the socket `start` makes.
func TestListenerSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sockets")
	path := filepath.Join(dir, "shim.sock")
	l, _, err := serverListener(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {dir, 0o700}} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode().Perm(), c.want)
		}
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, any) error { return nil }

// TestServerRefusesOtherUsers: the server the shim builds completes a
// connection from its own user, and refuses one from another uid, for the
// task API and the monitor endpoint alike. The socket is abstract (no file
// modes), so only the server's check stands between the two. Needs root to
// connect as another uid.
func TestServerRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another uid")
	}
	server, err := newServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := task.New(exitmon.New(nopPublisher{}), "testns", newShutdown()).RegisterTTRPC(server); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	addr := "@watch-shim-test/" + hex.EncodeToString(b[:])
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(context.Background(), l)
	defer server.Close()

	if err := callBoth(t, dial(t, addr, -1)); err != nil {
		t.Fatalf("own user refused: %v", err)
	}
	const nobody = 65534
	if err := callBoth(t, dial(t, addr, nobody)); err == nil {
		t.Fatal("a connection from another uid was served")
	}
}

// callBoth calls the monitor endpoint and the task API on conn. An answer
// from the task API, an error status included, means it was served.
func callBoth(t *testing.T, conn net.Conn) error {
	t.Helper()
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := task.ReadCounters(ctx, client); err != nil {
		return err
	}
	_, err := taskapi.NewTTRPCTaskClient(client).State(ctx, &taskapi.StateRequest{ID: "none"})
	if _, ok := status.FromError(err); ok {
		return nil
	}
	return err
}

// dial connects to the abstract socket addr, as uid unless it is -1. The
// uid is changed on one locked OS thread only (a raw setresuid, not Go's
// all-threads one), which connects and then ends with its goroutine.
func dial(t *testing.T, addr string, uid int) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if uid != -1 {
			keep := ^uintptr(0)
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
				ch <- result{err: e}
				return
			}
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		f := os.NewFile(uintptr(fd), "client")
		defer f.Close()
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.FileConn(f)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.c
}
