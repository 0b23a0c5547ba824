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
)

// Stdio is where a process's standard streams go, as containerd sends it:
// fifo paths, file:// or binary:// URIs, and whether it has a terminal.
type Stdio struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// IsNull reports whether the process has no stdio at all.
func (s Stdio) IsNull() bool { return s.Stdin == "" && s.Stdout == "" && s.Stderr == "" }

// drainTimeout bounds how long Close waits for output after exit.
const drainTimeout = 3 * time.Second

// pio is the shim's side of a process's stdio. For a terminal the streams
// are copied through the console master; otherwise through pipes.
type pio struct {
	stdio   Stdio
	runcIO  runc.IO
	sock    *runc.Socket
	con     console.Console
	mu      sync.Mutex
	stdin   io.WriteCloser
	closers []io.Closer
	copies  sync.WaitGroup
}

// newPIO prepares stdio before runc runs: pipes or a console socket.
func newPIO(stdio Stdio, uid, gid int) (*pio, error) {
	p := &pio{stdio: stdio}
	var err error
	switch {
	case stdio.Terminal:
		p.sock, err = runc.NewTempConsoleSocket()
	case stdio.IsNull():
		p.runcIO, err = runc.NewNullIO()
	default:
		p.runcIO, err = runc.NewPipeIO(uid, gid, func(o *runc.IOOption) { o.OpenStdin = stdio.Stdin != "" })
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

// attach starts copying once runc has created the process.
func (p *pio) attach(ctx context.Context, env []string) error {
	if p.stdio.Terminal {
		return p.attachConsole(ctx)
	}
	if p.stdio.IsNull() {
		return nil
	}
	if err := p.attachStdin(ctx, p.runcIO.Stdin()); err != nil {
		return err
	}
	return p.attachOutputs(ctx, env)
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
	p.mu.Lock()
	p.stdin = dst
	p.closers = append(p.closers, f)
	p.mu.Unlock()
	go func() {
		_, _ = copyStream(dst, f)
		if !p.stdio.Terminal {
			p.CloseStdin()
		}
	}()
	return nil
}

func (p *pio) attachOutputs(ctx context.Context, env []string) error {
	if u, err := url.Parse(p.stdio.Stdout); err == nil && u.Scheme == "binary" {
		return p.startLogger(u, env)
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

// copy copies r to w until r's writer is gone, then closes w. See
// copyStream: no buffer is kept per stream.
func (p *pio) copy(w io.WriteCloser, r io.Reader) {
	p.copies.Add(1)
	go func() {
		defer p.copies.Done()
		_, _ = copyStream(w, r)
		w.Close()
	}()
}

// openOutput opens a fifo path or a file:// URI for writing.
func openOutput(ctx context.Context, uri string) (io.WriteCloser, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Scheme == "fifo" {
		path := uri
		if err == nil && u.Scheme == "fifo" {
			path = u.Path
		}
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), path, syscall.O_WRONLY, 0)
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
func (p *pio) startLogger(u *url.URL, env []string) error {
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
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = []*os.File{out, errf, w}
	ch, err := monitor.StartCmd(cmd)
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
