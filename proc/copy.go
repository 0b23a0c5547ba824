package proc

// Copying a process's stdio without a userspace buffer per stream.
//
// io.Copy allocates a 32 KiB buffer per call and keeps it for as long as
// the copy runs: for a container's stdout and stderr that is 64 KiB held
// for the container's whole life, mostly while blocked waiting for output.
// Between a pipe and a fifo (or any two fds of which one is a pipe),
// splice(2) moves the data inside the kernel, so a stream costs no buffer
// at all. Where splice cannot work (a regular file opened O_APPEND for a
// file:// URI, a terminal, a reader that is no file) copyStream falls back
// to read/write through a 4 KiB buffer; when the source is a pollable fd,
// that buffer is taken from a pool only when data is there and is given
// back before waiting for more, so an idle stream holds none either.
//
// Blocking: the fds the shim copies between are non-blocking and in Go's
// netpoller (os.Pipe ends, fifos opened by containerd/fifo through
// os.OpenFile). The copier keeps it that way and waits in the netpoller
// through syscall.RawConn, returning false from the callbacks on EAGAIN.
// Making the fds blocking instead would be simpler but would park one OS
// thread in splice per stream for the container's life: a thread costs its
// g0 and signal stacks plus a kernel stack, more than the buffer this
// removes (docs/performance.md).
//
// Two fds, one wait: splice with SPLICE_F_NONBLOCK fails with EAGAIN both
// when the source is empty and when the destination is full, and does not
// say which. On EAGAIN the copier asks poll(2), with a zero timeout, which
// end is not ready and waits for that one. The wait happens only under
// that fd's RawConn: the other fd is not held meanwhile, because Go's
// File.Close waits for every RawConn callback on the fd to return, and
// Close of the source (pio.Close after the drain timeout) must not hang on
// a destination nobody reads.

import (
	"io"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// maxSpliceSize bounds one splice call. The pipe bounds it anyway (64
	// KiB by default); this is what Go's own splice code uses.
	maxSpliceSize = 1 << 20
	// fallbackBufSize is the buffer of the read/write fallback.
	fallbackBufSize = 4 << 10
	// maxSpurious is how many times in a row splice may say EAGAIN while
	// poll says both ends are ready before the copier stops trusting
	// splice for this pair of fds and falls back to read/write.
	maxSpurious = 100
)

// copyBufPool holds the fallback's buffers.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, fallbackBufSize); return &b }}

// copyStream copies r to w until r is at EOF (the writer closed: nil
// error) or an error, like io.Copy. It splices when r and w are fds splice
// can join and copies through a small buffer otherwise. It does not close
// w.
func copyStream(w io.Writer, r io.Reader) (int64, error) {
	n, done, err := spliceStream(w, r)
	if done {
		return n, err
	}
	m, err := bufferedCopy(w, r)
	return n + m, err
}

// spliceStream copies r to w with splice(2) when it can. done is false
// when splice cannot join these two (either is no fd, an fd is blocking,
// or the kernel refuses the pair) and the caller must copy the rest
// itself; n is what was spliced before that.
func spliceStream(w io.Writer, r io.Reader) (n int64, done bool, err error) {
	rc, ok := r.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	wc, ok := w.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	rraw, err := rc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	wraw, err := wc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	if !canWait(rraw) || !canWait(wraw) {
		return 0, false, nil
	}
	s := &splicer{rraw: rraw, wraw: wraw}
	s.readFn, s.spliceFn, s.writableFn = s.onReadable, s.splice, s.writable
	return s.run()
}

// canWait reports whether the copier can wait for the fd in the netpoller
// or never needs to: it is non-blocking (os.File then registered it with
// the poller), or it is a regular file or block device, which never says
// EAGAIN. A blocking pipe is neither: splice would block in the kernel or,
// with the other end non-blocking, fail with EAGAIN the poller cannot wait
// out.
func canWait(raw syscall.RawConn) bool {
	ok := false
	err := raw.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			return
		}
		if fl&unix.O_NONBLOCK != 0 {
			ok = true
			return
		}
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil {
			m := st.Mode & unix.S_IFMT
			ok = m == unix.S_IFREG || m == unix.S_IFBLK
		}
	})
	return err == nil && ok
}

// What a splice that moved nothing waits for.
const (
	waitNone     = iota
	waitRead     // the source is empty
	waitWrite    // the destination is full
	waitSpurious // EAGAIN, yet poll says both ends are ready
)

// splicer is one splice stream's state. Its callbacks are bound once so
// the loop does not allocate.
type splicer struct {
	rraw, wraw syscall.RawConn
	rfd        int // valid only inside onReadable
	n          int
	err        error
	wait       int
	pfd        [2]unix.PollFd

	readFn, spliceFn, writableFn func(uintptr) bool
}

func (s *splicer) run() (written int64, done bool, err error) {
	spurious := 0
	for {
		s.n, s.err, s.wait = 0, nil, waitNone
		// onReadable splices under both fds and waits (returning false)
		// for the source only.
		if err := s.rraw.Read(s.readFn); err != nil {
			return written, true, err
		}
		switch {
		case s.err == unix.EINVAL || s.err == unix.ENOSYS:
			// The kernel cannot splice these two: no pipe on either
			// side, or the destination is opened O_APPEND (file:// stdio).
			return written, false, nil
		case s.err != nil:
			return written, true, s.err
		case s.wait == waitWrite:
			// The source is no longer held here: closing it does not
			// wait for the destination to drain.
			if err := s.wraw.Write(s.writableFn); err != nil {
				return written, true, err
			}
		case s.wait == waitSpurious:
			if spurious++; spurious > maxSpurious {
				return written, false, nil
			}
			runtime.Gosched()
		case s.n == 0:
			return written, true, nil // EOF: the writer is gone
		default:
			written += int64(s.n)
			spurious = 0
		}
	}
}

// onReadable runs under the source's RawConn.Read: it splices once under
// the destination's RawConn.Write and asks to wait when the source is
// empty.
func (s *splicer) onReadable(rfd uintptr) bool {
	s.rfd = int(rfd)
	if err := s.wraw.Write(s.spliceFn); err != nil {
		s.err = err // the destination is closed
		return true
	}
	return s.wait != waitRead
}

// splice runs under both RawConns. It always returns true, so it never
// waits for the destination while holding the source.
func (s *splicer) splice(wfd uintptr) bool {
	s.wait = waitNone
	for {
		// SPLICE_F_NONBLOCK: never block on the pipe ends (the fds are
		// O_NONBLOCK too; older kernels only honour the flag).
		// SPLICE_F_MOVE is left out: it has been a no-op since 2.6.21.
		n, err := unix.Splice(s.rfd, nil, int(wfd), nil, maxSpliceSize, unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			s.n = int(n)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			s.wait = s.blocked(int(wfd))
		default:
			s.err = err
		}
		return true
	}
}

// blocked tells, after EAGAIN, which end to wait for. An end that is at
// EOF or broken counts as ready: the next splice reports it.
func (s *splicer) blocked(wfd int) int {
	s.pfd[0] = unix.PollFd{Fd: int32(s.rfd), Events: unix.POLLIN}
	s.pfd[1] = unix.PollFd{Fd: int32(wfd), Events: unix.POLLOUT}
	if _, err := unix.Poll(s.pfd[:], 0); err != nil {
		return waitSpurious // EINTR: try again
	}
	const bad = unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
	switch {
	case s.pfd[0].Revents&(unix.POLLIN|bad) == 0:
		return waitRead
	case s.pfd[1].Revents&(unix.POLLOUT|bad) == 0:
		return waitWrite
	}
	return waitSpurious
}

// writable runs under the destination's RawConn.Write and returns false
// (wait) while it is full. Checking inside the callback, after the poller
// was armed, is what makes the wait safe: a reader draining the fifo
// between the failed splice and this check cannot be missed.
func (s *splicer) writable(wfd uintptr) bool {
	s.pfd[1] = unix.PollFd{Fd: int32(wfd), Events: unix.POLLOUT}
	n, err := unix.Poll(s.pfd[1:], 0)
	return err != nil || n > 0
}

// bufferedCopy is copyStream's read/write fallback, with a pooled 4 KiB
// buffer. It never hands w or r to io.Copy, whose ReaderFrom/WriterTo
// paths for *os.File allocate 32 KiB again.
func bufferedCopy(w io.Writer, r io.Reader) (int64, error) {
	if rc, ok := r.(syscall.Conn); ok {
		if raw, err := rc.SyscallConn(); err == nil {
			return rawBufferedCopy(w, raw)
		}
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	var written int64
	for {
		nr, rerr := r.Read(*bp)
		if nr > 0 {
			nw, werr := w.Write((*bp)[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// rawReader reads an fd through its RawConn into a pooled buffer that it
// takes only once data is there: on EAGAIN the buffer goes back to the
// pool before the netpoller wait.
type rawReader struct {
	buf    *[]byte
	n      int
	err    error
	readFn func(uintptr) bool
}

func (rr *rawReader) read(fd uintptr) bool {
	bp := copyBufPool.Get().(*[]byte)
	for {
		n, err := unix.Read(int(fd), *bp)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			copyBufPool.Put(bp)
			return false
		case nil:
			rr.buf, rr.n = bp, n
		default:
			copyBufPool.Put(bp)
			rr.err = err
		}
		return true
	}
}

func rawBufferedCopy(w io.Writer, raw syscall.RawConn) (int64, error) {
	rr := &rawReader{}
	rr.readFn = rr.read
	var written int64
	for {
		rr.buf, rr.n, rr.err = nil, 0, nil
		if err := raw.Read(rr.readFn); err != nil {
			return written, err
		}
		if rr.err != nil {
			return written, rr.err
		}
		if rr.n == 0 {
			copyBufPool.Put(rr.buf)
			return written, nil // EOF
		}
		nw, werr := w.Write((*rr.buf)[:rr.n])
		copyBufPool.Put(rr.buf)
		written += int64(nw)
		if werr != nil {
			return written, werr
		}
		if nw != rr.n {
			return written, io.ErrShortWrite
		}
	}
}
