package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// containerd's end of a stdout fifo: it opens the fifo for reading, goes
// away when containerd stops, and opens it again when containerd is back.
func openReader(t *testing.T, path string) *os.File {
	t.Helper()
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readSome reads from r until at least n bytes came or d passed.
func readSome(t *testing.T, r *os.File, n int, d time.Duration) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(d)
	for len(got) < n && time.Now().Before(deadline) {
		_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		m, _ := r.Read(buf)
		got = append(got, buf[:m]...)
	}
	return got
}

// readToEOF reads r until EOF (every writer gone) or d passed.
func readToEOF(t *testing.T, r *os.File, d time.Duration) ([]byte, bool) {
	t.Helper()
	var got []byte
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		m, err := r.Read(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			return got, true
		}
	}
	return got, false
}

// checkLines checks that b is exactly the lines 0..n-1, each "%08d\n".
func checkLines(t *testing.T, b []byte, n int) {
	t.Helper()
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(b) == 0 {
		lines = nil
	}
	for i, l := range lines {
		if v, err := strconv.Atoi(string(l)); err != nil || v != i {
			t.Fatalf("line %d is %q: output has a gap or garbage (%d lines, want %d)", i, l, len(lines), n)
		}
	}
	if len(lines) != n {
		t.Fatalf("got %d lines, want %d", len(lines), n)
	}
}

func numbered(from, to int) []byte {
	var b bytes.Buffer
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%08d\n", i)
	}
	return b.Bytes()
}

// copyToFifo makes a stdout fifo, opens the shim's side of it as the shim
// does (openOutput, after containerd's reader r, when reader is set) and
// starts pio.copy from a pipe into it. It returns the fifo's path, the
// reader (nil unless asked for), the process's end of the pipe and the pio.
func copyToFifo(t *testing.T, reader bool) (path string, r, in *os.File, p *pio) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "stdout")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if reader {
		r = openReader(t, path)
	}
	dst, err := openOutput(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	src, in := pipe(t)
	t.Cleanup(func() { src.Close() })
	p = &pio{stop: make(chan struct{})}
	p.copy(dst, src)
	return path, r, in, p
}

// The reader of a stdout fifo (containerd) goes away while the process
// keeps writing, and comes back: every byte arrives, in order, and the
// copy goes on instead of ending with EPIPE.
func TestOutputSurvivesReaderRestart(t *testing.T) {
	path, r1, in, _ := copyToFifo(t, true)

	const lines = 60000 // 540 KB: several times a pipe, so the writer blocks
	data := numbered(0, lines)
	written := make(chan error, 1)
	go func() {
		_, err := in.Write(data)
		in.Close()
		written <- err
	}()

	first := readSome(t, r1, 100<<10, 10*time.Second)
	r1.Close() // containerd stops
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-written:
		t.Fatalf("the process wrote everything (%v) while nobody read: output was thrown away", err)
	default:
	}

	r2 := openReader(t, path) // containerd is back
	defer r2.Close()
	rest, eof := readToEOF(t, r2, 20*time.Second)
	if !eof {
		t.Fatalf("no EOF after the process closed its output (%d bytes read)", len(first)+len(rest))
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("the process's write failed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the process is blocked on its output after the reader came back (%d bytes read)", len(first)+len(rest))
	}
	checkLines(t, append(first, rest...), lines)
}

// Output the process wrote just before it exited, while containerd was
// away, is still there for containerd when it comes back.
func TestOutputKeptUntilReaderReturns(t *testing.T) {
	path, r1, in, p := copyToFifo(t, true)
	r1.Close() // containerd stops

	if _, err := in.Write(numbered(0, 1000)); err != nil {
		t.Fatal(err)
	}
	in.Close() // the process exits
	time.Sleep(300 * time.Millisecond)

	r2 := openReader(t, path) // containerd is back
	defer r2.Close()
	got, eof := readToEOF(t, r2, 10*time.Second)
	if !eof {
		t.Fatal("no EOF once the last output was read")
	}
	checkLines(t, got, 1000)
	waitCopies(t, p)
}

// A reader that never comes back does not keep the copy alive past
// Close's drain: stop ends the wait.
func TestOutputLingerEndsOnStop(t *testing.T) {
	_, _, in, p := copyToFifo(t, false)
	if _, err := in.Write([]byte("unread\n")); err != nil {
		t.Fatal(err)
	}
	in.Close()
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
		t.Fatal("copy ended while its output was unread and Close had not given up")
	default:
	}
	p.stopOnce.Do(func() { close(p.stop) })
	waitCopies(t, p)
}

func waitCopies(t *testing.T, p *pio) {
	t.Helper()
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("copy goroutine still running")
	}
}
