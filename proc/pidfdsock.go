package proc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// pidfdSocket receives the pidfd of the process a runc invocation creates
// (runc's --pidfd-socket). It listens in the abstract namespace, where
// go-runc's temp socket makes and removes a directory and a socket file for
// every launch: a tenth of the shim's CPU per exec when /tmp is on disk, and
// left behind when the shim is killed. The pidfd arrives close-on-exec, so
// no runc started later inherits it.
//
// An abstract socket has no owner or mode: anyone in the shim's network
// namespace who reads its name from /proc/net/unix can connect. So the
// socket takes a pidfd only from the runc process started with it, checked
// by SO_PEERCRED against the pid the runc monitor reports when it starts
// that runc (runcStarted).
type pidfdSocket struct {
	l    *net.UnixListener
	name string
	runc chan int      // the pid of the runc started with this socket
	done chan struct{} // closed by Close
	once sync.Once
}

// pidfdSockets maps the names of open pidfd sockets to them, for
// runcStarted.
var pidfdSockets sync.Map

func newPidfdSocket() (*pidfdSocket, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	// A leading @ is Go's spelling of the abstract namespace; runc dials
	// the name with Go's net package too.
	name := "@containerd-shim-watch-v2/pidfd/" + hex.EncodeToString(b[:])
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, err
	}
	s := &pidfdSocket{l: l, name: name, runc: make(chan int, 1), done: make(chan struct{})}
	pidfdSockets.Store(name, s)
	return s, nil
}

// Path is what runc is given as --pidfd-socket.
func (s *pidfdSocket) Path() string { return s.name }

// Close stops a receive in progress.
func (s *pidfdSocket) Close() {
	s.once.Do(func() {
		pidfdSockets.Delete(s.name)
		close(s.done)
		s.l.Close()
	})
}

// runcStarted hands the pid of a runc process that has just started to the
// pidfd socket its command line names, if any.
func runcStarted(c *exec.Cmd) {
	for i := 0; i+1 < len(c.Args); i++ {
		if c.Args[i] != "--pidfd-socket" {
			continue
		}
		if v, ok := pidfdSockets.Load(c.Args[i+1]); ok {
			select {
			case v.(*pidfdSocket).runc <- c.Process.Pid:
			default:
			}
		}
		return
	}
}

// receive returns the pidfd that the runc started with s sends, or -1 once
// s is closed. Connections from any other process are dropped.
func (s *pidfdSocket) receive() int {
	runcPid := 0
	for {
		conn, err := s.l.AcceptUnix()
		if err != nil {
			return -1
		}
		peer, err := peerPid(conn)
		if err == nil && runcPid == 0 {
			select {
			case runcPid = <-s.runc:
			case <-s.done:
				conn.Close()
				return -1
			}
		}
		if err == nil && peer != runcPid {
			err = fmt.Errorf("connection from pid %d, not from runc (pid %d)", peer, runcPid)
		}
		fd := -1
		if err == nil {
			fd, err = recvFd(conn)
		}
		conn.Close()
		if err == nil {
			return fd
		}
		log.L.WithError(err).Warn("pidfd socket: dropped a connection")
	}
}

func peerPid(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Pid), nil
}

// recvFd reads the one file descriptor runc sends (with the name of the
// file as data). Go's ReadMsgUnix receives it close-on-exec.
func recvFd(conn *net.UnixConn) (int, error) {
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, err
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, err
	}
	var fds []int
	for i := range scms {
		got, err := unix.ParseUnixRights(&scms[i])
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("expected one file descriptor, got %d", len(fds))
	}
	return fds[0], nil
}
