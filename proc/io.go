package proc

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// Stdio is where a process's standard streams go, as containerd sends it:
// fifo paths, file:// or binary:// URIs, and whether it has a terminal.
type Stdio struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// isNull reports whether the process has no stdio at all.
func (s Stdio) isNull() bool { return s.Stdin == "" && s.Stdout == "" && s.Stderr == "" }

// drainTimeout bounds how long Close waits for output after exit.
const drainTimeout = 3 * time.Second

// pio is the shim's side of a process's stdio. For a terminal the streams
// are copied through the console master; otherwise through pipes.
type pio struct {
	stdio  Stdio
	runcIO runc.IO
	sock   *runc.Socket
	con    console.Console
	mu     sync.Mutex
	stdin  io.WriteCloser
	// stdinHold is the shim's own write side of the stdin fifo.
	stdinHold io.Closer
	closers   []io.Closer
	outputs   []io.Closer
	copies    sync.WaitGroup
	// stop is closed by Close once the drain wait is over: an output copy
	// still lingering for its reader gives up then.
	stop     chan struct{}
	stopOnce sync.Once
}

// newPIO prepares stdio before runc runs: pipes or a console socket.
func newPIO(stdio Stdio, uid, gid int) (*pio, error) {
	p := &pio{stdio: stdio, stop: make(chan struct{})}
	var err error
	switch {
	case stdio.Terminal:
		p.sock, err = runc.NewTempConsoleSocket()
	case stdio.isNull():
		p.runcIO, err = runc.NewNullIO()
	default:
		// A stream nobody reads gets no pipe: the process writes it to
		// /dev/null instead of blocking once a pipe's 64 KiB are full.
		// A binary:// logger takes both pipes.
		logger := isBinaryURI(stdio.Stdout)
		p.runcIO, err = runc.NewPipeIO(uid, gid, func(o *runc.IOOption) {
			o.OpenStdin = stdio.Stdin != ""
			o.OpenStdout = stdio.Stdout != "" || logger
			o.OpenStderr = stdio.Stderr != "" || logger
		})
	}
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	return p, nil
}

// consoleSocket returns the socket runc sends the terminal master to.
func (p *pio) consoleSocket() runc.ConsoleSocket {
	if p.sock == nil {
		return nil
	}
	return p.sock
}

// attach starts copying once runc has created the process. A binary://
// logger is started, reaped through mon, with env as its whole environment.
func (p *pio) attach(ctx context.Context, mon *exitmon.Monitor, env []string) error {
	if p.stdio.Terminal {
		return p.attachConsole(ctx)
	}
	if p.stdio.isNull() {
		return nil
	}
	if err := p.attachStdin(ctx, p.runcIO.Stdin()); err != nil {
		return err
	}
	return p.attachOutputs(ctx, mon, env)
}

func (p *pio) attachConsole(ctx context.Context) error {
	con, err := p.sock.ReceiveMaster()
	p.sock.Close()
	p.sock = nil
	if err != nil {
		return fmt.Errorf("receive console master: %w", err)
	}
	p.con = con
	if err := p.attachStdin(ctx, con); err != nil {
		return err
	}
	if p.stdio.Stdout == "" {
		return nil
	}
	w, err := openOutput(ctx, p.stdio.Stdout)
	if err != nil {
		return err
	}
	p.copy(w, con)
	return nil
}

// attachStdin copies the stdin fifo into dst until it is closed.
func (p *pio) attachStdin(ctx context.Context, dst io.WriteCloser) error {
	if p.stdio.Stdin == "" || dst == nil {
		return nil
	}
	f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.stdio.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open stdin %s: %w", p.stdio.Stdin, err)
	}
	// Like the stock shim, hold a write side: the process sees EOF on
	// CloseIO, not when containerd (the fifo's writer) goes away.
	hold, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.stdio.Stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		f.Close()
		return fmt.Errorf("open stdin %s: %w", p.stdio.Stdin, err)
	}
	p.mu.Lock()
	p.stdin, p.stdinHold = dst, hold
	p.closers = append(p.closers, f, hold)
	p.mu.Unlock()
	go func() {
		_, _ = copyStream(dst, f)
		if !p.stdio.Terminal {
			p.CloseStdin()
		}
	}()
	return nil
}

func (p *pio) attachOutputs(ctx context.Context, mon *exitmon.Monitor, env []string) error {
	if isBinaryURI(p.stdio.Stdout) {
		u, _ := url.Parse(p.stdio.Stdout)
		return p.startLogger(u, mon, env)
	}
	for _, s := range []struct {
		uri string
		r   io.Reader
	}{{p.stdio.Stdout, p.runcIO.Stdout()}, {p.stdio.Stderr, p.runcIO.Stderr()}} {
		if s.uri == "" || s.r == nil {
			continue
		}
		w, err := openOutput(ctx, s.uri)
		if err != nil {
			return err
		}
		p.copy(w, s.r)
	}
	return nil
}

func isBinaryURI(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "binary"
}

// copy copies r to w until r's writer is gone, then closes w once its
// reader took what is still in it. See copyStream: no buffer is kept per
// stream.
func (p *pio) copy(w io.WriteCloser, r io.Reader) {
	p.copies.Add(1)
	p.mu.Lock()
	p.outputs = append(p.outputs, w)
	p.mu.Unlock()
	go func() {
		defer p.copies.Done()
		_, _ = copyStream(w, r)
		lingerUntilRead(w, p.stop)
		w.Close()
	}()
}

// lingerUntilRead waits, after the process's last write, until w's reader
// has taken everything still buffered in w (a fifo), or until stop. The
// shim holds the fifo open for both reading and writing (openOutput), so
// closing it while containerd is away (restarting) and has not read the
// last of the output would throw that output away with the pipe. Closing
// only once the fifo is empty hands containerd every byte, and its reader
// the EOF it waits for right after.
func lingerUntilRead(w io.Writer, stop <-chan struct{}) {
	wait := time.Millisecond
	for unread(w) > 0 {
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// unread returns how many bytes sit unread in w, a pipe or fifo; 0 for
// anything else (TIOCINQ is FIONREAD).
func unread(w io.Writer) int {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// openOutput opens a fifo path or a file:// URI for writing.
//
// A fifo is opened for reading and writing. The shim never reads from it;
// holding a read side only keeps the fifo usable while its real reader,
// containerd, is away (restarting or upgrading): writes then wait for room
// instead of failing with EPIPE, which would end the copy and leave the
// container blocked on its next write for good. When containerd opens the
// fifo again it reads on from the first byte it missed. This is Linux's
// meaning of O_RDWR on a fifo (POSIX leaves it undefined), and it never
// blocks the open.
func openOutput(ctx context.Context, uri string) (io.WriteCloser, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Scheme == "fifo" {
		path := uri
		if err == nil && u.Scheme == "fifo" {
			path = u.Path
		}
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), path, syscall.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdio %s: %w", path, err)
		}
		return f, nil
	}
	if u.Scheme != "file" {
		return nil, fmt.Errorf("stdio scheme %q: %w", u.Scheme, errdefs.ErrNotImplemented)
	}
	f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open stdio file: %w", err)
	}
	return f, nil
}

// startLogger runs a binary:// logging driver with the output pipes as
// fds 3 and 4 and waits until it closes fd 5 to say it is ready.
func (p *pio) startLogger(u *url.URL, mon *exitmon.Monitor, env []string) error {
	out, ok1 := p.runcIO.Stdout().(*os.File)
	errf, ok2 := p.runcIO.Stderr().(*os.File)
	if !ok1 || !ok2 {
		return fmt.Errorf("binary logger needs pipe stdio: %w", errdefs.ErrInvalidArgument)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	args := []string{}
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 && vs[0] != "" {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	// Like the stock shim's logger: the container's identity, not the
	// shim's environment (which holds containerd's addresses).
	cmd.Env = append([]string{}, env...)
	cmd.ExtraFiles = []*os.File{out, errf, w}
	ch, err := mon.StartCmd(cmd)
	w.Close()
	if err != nil {
		return fmt.Errorf("start logger %s: %w", u.Path, err)
	}
	go func() { <-ch }()
	// The logger writes nothing to fd 5; it only closes it when ready.
	// Read to EOF without io.Copy's buffer.
	var b [64]byte
	for {
		if _, err := r.Read(b[:]); err != nil {
			return nil
		}
	}
}

// CloseStdin closes the process's stdin (CloseIO).
func (p *pio) CloseStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinHold != nil {
		p.stdinHold.Close()
		p.stdinHold = nil
	}
	if p.stdin != nil && p.con == nil {
		p.stdin.Close()
		p.stdin = nil
	}
	if p.con != nil && p.stdin != nil {
		// A terminal has no separate stdin: send EOF through the line discipline.
		_, _ = p.con.Write([]byte{4})
		p.stdin = nil
	}
}

// Resize changes the terminal size.
func (p *pio) Resize(w, h uint32) error {
	if p.con == nil {
		return fmt.Errorf("process has no terminal: %w", errdefs.ErrFailedPrecondition)
	}
	return p.con.Resize(console.WinSize{Width: uint16(w), Height: uint16(h)})
}

// closeAfterStart closes the ends of the pipes that belong to the child.
func (p *pio) closeAfterStart() {
	if c, ok := p.runcIO.(runc.StartCloser); ok {
		_ = c.CloseAfterStart()
	}
}

// Close waits for output to drain after the process exited and releases
// everything.
func (p *pio) Close(ctx context.Context) {
	if p.sock != nil {
		p.sock.Close()
	}
	if p.con != nil {
		p.con.Close()
	}
	// Output drains until every writer is gone; a daemon left holding the
	// pipe must not hang Delete, so the wait is bounded.
	drained := make(chan struct{})
	go func() { p.copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		log.G(ctx).Warn("stdio still open after process exit; closing")
	}
	p.stopOnce.Do(func() { close(p.stop) })
	p.mu.Lock()
	for _, w := range p.outputs {
		w.Close() // frees a copy waiting for a reader that is not coming back
	}
	p.mu.Unlock()
	if p.runcIO != nil {
		p.runcIO.Close()
	}
	p.mu.Lock()
	for _, c := range p.closers {
		c.Close()
	}
	p.closers = nil
	p.mu.Unlock()
	log.G(ctx).Debug("stdio closed")
}
