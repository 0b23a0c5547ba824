package proc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// pidfdSocket receives the pidfd of the process a runc invocation creates
// (runc's --pidfd-socket). The pidfd arrives close-on-exec, so no runc
// started later inherits it.
//
// Where it listens is chosen against two costs:
//   - Reach. runc dials a path, so a socketpair cannot be used, and an
//     abstract socket is open to every process in the shim's network
//     namespace (a hostNetwork pod, a local user), which reads its name from
//     /proc/net/unix and can fill its backlog so that runc's connect fails.
//     The socket is a file in pidfdDir, a directory that belongs to the
//     shim's user with mode 0700 (checked, see privateDir): no other user can
//     connect, and a container sees it only if the host's /run is mounted
//     into it.
//   - CPU per exec. go-runc's temp socket makes and removes a directory in
//     /tmp for every launch. pidfdDir is made and checked once per shim; a
//     launch only binds and unlinks one file on /run, a tmpfs.
//
// A process that can reach the socket anyway (same user, host mount
// namespace) still cannot stall or forge it: the socket waits for the pid
// of its runc (runcStarted) before it accepts, so runc's connection waits
// in the backlog; then every connection is checked by SO_PEERCRED without
// blocking, others are dropped at once, and drops are logged at most once
// per dropLogEvery.
type pidfdSocket struct {
	l    *net.UnixListener
	path string
	runc chan int      // the pid of the runc started with this socket
	done chan struct{} // closed by Close

	mu     sync.Mutex
	conn   *net.UnixConn // the connection receive reads from, for Close
	closed bool
}

// pidfdDir holds the shim's pidfd sockets, one file per launch in progress.
// A variable for tests.
var pidfdDir = "/run/containerd-shim-watch-v2/pidfd"

// pidfdDirChecked is set once pidfdDir was found private; reset when a
// bind finds it gone.
var pidfdDirChecked atomic.Bool

// pidfdSockets maps the paths of open pidfd sockets to them, for
// runcStarted.
var pidfdSockets sync.Map

// newPidfdSocket listens on a new socket file in pidfdDir.
func newPidfdSocket() (*pidfdSocket, error) {
	s, err := listenPidfd()
	if errors.Is(err, unix.ENOENT) {
		pidfdDirChecked.Store(false) // removed under us: make it again
		s, err = listenPidfd()
	}
	return s, err
}

func listenPidfd() (*pidfdSocket, error) {
	if !pidfdDirChecked.Load() {
		if err := privateDir(pidfdDir); err != nil {
			return nil, fmt.Errorf("pidfd socket directory: %w", err)
		}
		pidfdDirChecked.Store(true)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(pidfdDir, hex.EncodeToString(b[:]))
	// Close unlinks the file: Go's listener removes what it bound.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen pidfd socket: %w", err)
	}
	s := &pidfdSocket{l: l, path: path, runc: make(chan int, 1), done: make(chan struct{})}
	pidfdSockets.Store(path, s)
	return s, nil
}

// Path is what runc is given as --pidfd-socket.
func (s *pidfdSocket) Path() string { return s.path }

// Close stops a receive in progress, also one reading from runc's
// connection, and removes the socket file. After Close, receive returns
// promptly and no pidfd can arrive any more.
func (s *pidfdSocket) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	pidfdSockets.Delete(s.path)
	close(s.done)
	s.l.Close()
	if s.conn != nil {
		s.conn.Close()
	}
}

// runcStarted hands the pid of a runc process that has just started to the
// pidfd socket its command line names, if any.
func runcStarted(c *exec.Cmd) {
	for i := 0; i+1 < len(c.Args); i++ {
		if c.Args[i] != "--pidfd-socket" {
			continue
		}
		if v, ok := pidfdSockets.Load(c.Args[i+1]); ok {
			s := v.(*pidfdSocket)
			select {
			case s.runc <- c.Process.Pid:
				s.l.SetDeadline(time.Now()) // wake receive from Accept
			default:
			}
		}
		return
	}
}

// receive returns the pidfd that the runc started with s sends, or -1 once
// s is closed. It never waits on one connection while others queue: every
// connection is accepted at once and checked against runc's pid, and until
// that pid is known (runcStarted) the newest maxPending are kept aside.
// Connections from any other process are dropped.
func (s *pidfdSocket) receive() int {
	var (
		runcPid int
		pending []peerConn // accepted before runcPid was known
	)
	defer func() { closeAll(pending) }()
	for {
		if runcPid == 0 {
			select {
			case runcPid = <-s.runc:
				if fd, ok := s.takePending(pending, runcPid); ok {
					pending = nil
					return fd
				}
				pending = nil
			default:
			}
		}
		conn, err := s.l.AcceptUnix()
		if isTimeout(err) { // runcStarted's wake-up
			s.l.SetDeadline(time.Time{})
			continue
		}
		if err != nil {
			return -1
		}
		peer, err := peerPid(conn)
		switch {
		case err != nil:
			conn.Close()
			droppedConns.warn(err)
		case runcPid == 0:
			pending = keepNewest(pending, peerConn{conn, peer})
		default:
			if fd, err := s.take(conn, peer, runcPid); err == nil {
				return fd
			} else if errors.Is(err, net.ErrClosed) {
				return -1
			} else {
				droppedConns.warn(err)
			}
		}
	}
}

// maxPending bounds the connections receive keeps while it does not know
// runc's pid yet. runc connects well after it started, and runcStarted
// runs right after the start, so runc's connection is hardly ever among
// them; the bound only caps what a flood costs.
const maxPending = 8

type peerConn struct {
	conn *net.UnixConn
	pid  int
}

func keepNewest(pending []peerConn, pc peerConn) []peerConn {
	if len(pending) == maxPending {
		pending[0].conn.Close()
		droppedConns.warn(fmt.Errorf("connection from pid %d before runc started", pending[0].pid))
		pending = append(pending[:0], pending[1:]...)
	}
	return append(pending, pc)
}

func closeAll(pending []peerConn) {
	for _, pc := range pending {
		pc.conn.Close()
	}
}

// takePending takes runc's pidfd from the connections kept before its pid
// was known, and closes them all.
func (s *pidfdSocket) takePending(pending []peerConn, runcPid int) (int, bool) {
	fd, found := -1, false
	for _, pc := range pending {
		if found || pc.pid != runcPid {
			pc.conn.Close()
			droppedConns.warn(fmt.Errorf("connection from pid %d, not from runc (pid %d)", pc.pid, runcPid))
			continue
		}
		found = true
		var err error
		if fd, err = s.take(pc.conn, pc.pid, runcPid); err != nil {
			droppedConns.warn(err)
		}
	}
	return fd, fd >= 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// take returns the pidfd sent over conn if conn is runc's, and closes conn.
func (s *pidfdSocket) take(conn *net.UnixConn, peer, runcPid int) (int, error) {
	defer conn.Close()
	if peer != runcPid {
		return -1, fmt.Errorf("connection from pid %d, not from runc (pid %d)", peer, runcPid)
	}
	if !s.reading(conn) {
		return -1, net.ErrClosed
	}
	return recvFd(conn)
}

// reading records conn as the one receive reads from, so that Close can
// interrupt the read; false if s is already closed.
func (s *pidfdSocket) reading(conn *net.UnixConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = conn
	return !s.closed
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
