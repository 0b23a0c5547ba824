package proc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"
)

// copyFunc is copyStream or a variant of it under test.
type copyFunc func(w io.Writer, r io.Reader) (int64, error)

// spliceOnly is spliceStream that fails the test if splice was not used
// for the whole stream.
func spliceOnly(t *testing.T) copyFunc {
	return func(w io.Writer, r io.Reader) (int64, error) {
		n, done, err := spliceStream(w, r)
		if !done {
			t.Errorf("spliceStream gave up after %d bytes (err %v); want the whole stream spliced", n, err)
		}
		return n, err
	}
}

func randomData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// outFifo makes a fifo with containerd's end open for reading and opens
// the shim's end the way the shim does for stdout (openOutput).
func outFifo(t *testing.T) (shim io.WriteCloser, containerd *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := openOutput(context.Background(), path)
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	return w, r
}

// inFifo makes a stdin fifo, opens the shim's end the way attachStdin
// does and containerd's end for writing.
func inFifo(t *testing.T) (shim io.ReadCloser, containerd *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	return r, w
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// transfer copies data from in (the process's end of the source) through
// src and dst to out (containerd's end of the destination) with copy,
// writing in bursts and reading slowly so that the copier waits for both
// an empty source and a full destination. It closes in when all is
// written and dst when copy returns, as pio does, and returns what came
// out of out up to EOF.
func transfer(t *testing.T, copy copyFunc, in io.WriteCloser, src io.Reader, dst io.WriteCloser, out io.Reader, data []byte) []byte {
	t.Helper()
	type result struct {
		n   int64
		err error
	}
	copied := make(chan result, 1)
	go func() {
		n, err := copy(dst, src)
		dst.Close()
		copied <- result{n, err}
	}()
	wrote := make(chan error, 1)
	go func() {
		rnd := rand.New(rand.NewSource(int64(len(data))))
		rest := data
		for len(rest) > 0 {
			k := min(len(rest), 1+rnd.Intn(200<<10))
			if _, err := in.Write(rest[:k]); err != nil {
				wrote <- err
				return
			}
			rest = rest[k:]
			if rnd.Intn(8) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		wrote <- in.Close()
	}()
	read := make(chan []byte, 1)
	go func() {
		rnd := rand.New(rand.NewSource(int64(len(data)) + 1))
		var got bytes.Buffer
		buf := make([]byte, 256<<10)
		for {
			n, err := out.Read(buf[:1+rnd.Intn(len(buf)-1)])
			got.Write(buf[:n])
			if err != nil {
				if err != io.EOF {
					t.Errorf("read destination: %v", err)
				}
				read <- got.Bytes()
				return
			}
			if rnd.Intn(16) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	timeout := time.After(60 * time.Second)
	var got []byte
	select {
	case got = <-read:
	case <-timeout:
		t.Fatal("destination never reached EOF")
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Errorf("write source: %v", err)
		}
	case <-timeout:
		t.Fatal("writer stuck")
	}
	select {
	case r := <-copied:
		if r.err != nil || r.n != int64(len(data)) {
			t.Errorf("copy = %d, %v; want %d, nil", r.n, r.err, len(data))
		}
	case <-timeout:
		t.Fatal("copy did not return")
	}
	return got
}

func checkSame(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
}

// ends opens a stream's two pairs: the process's end and the shim's end
// of the source, the shim's end and containerd's end of the destination.
type ends func(t *testing.T) (in io.WriteCloser, src io.ReadCloser, dst io.WriteCloser, out io.ReadCloser)

// Stdout and stderr: process pipe to containerd's fifo.
func pipeToFifo(t *testing.T) (io.WriteCloser, io.ReadCloser, io.WriteCloser, io.ReadCloser) {
	src, in := pipe(t)
	dst, out := outFifo(t)
	return in, src, dst, out
}

// Stdin: containerd's fifo to the process pipe.
func fifoToPipe(t *testing.T) (io.WriteCloser, io.ReadCloser, io.WriteCloser, io.ReadCloser) {
	src, in := inFifo(t)
	out, dst := pipe(t)
	return in, src, dst, out
}

func pipeToPipe(t *testing.T) (io.WriteCloser, io.ReadCloser, io.WriteCloser, io.ReadCloser) {
	src, in := pipe(t)
	out, dst := pipe(t)
	return in, src, dst, out
}

func TestCopySplice(t *testing.T) {
	for _, tc := range []struct {
		name string
		open ends
		size int
	}{
		{"pipe to fifo empty", pipeToFifo, 0},
		{"pipe to fifo 1 B", pipeToFifo, 1},
		{"pipe to fifo 64 KiB", pipeToFifo, 64 << 10},
		{"pipe to fifo 8 MiB", pipeToFifo, 8 << 20},
		{"fifo to pipe empty", fifoToPipe, 0},
		{"fifo to pipe 1 B", fifoToPipe, 1},
		{"fifo to pipe 8 MiB", fifoToPipe, 8 << 20},
		{"pipe to pipe 4 MiB", pipeToPipe, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, src, dst, out := tc.open(t)
			defer src.Close()
			defer out.Close()
			data := randomData(int64(tc.size), tc.size)
			checkSame(t, transfer(t, spliceOnly(t), in, src, dst, out, data), data)
		})
	}
}

// A file:// stdio is a regular file opened O_APPEND, which splice refuses
// (EINVAL): copyStream must fall back and append.
func TestCopyPipeToAppendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst, err := openOutput(context.Background(), "file://"+path)
	if err != nil {
		t.Fatal(err)
	}
	src, in := pipe(t)
	defer src.Close()
	data := randomData(4, 3<<20)

	// splice on its own gives up at once and leaves the stream whole.
	if _, err := in.Write(data[:10]); err != nil {
		t.Fatal(err)
	}
	if n, done, err := spliceStream(dst, src); done || n != 0 || err != nil {
		t.Fatalf("spliceStream to an O_APPEND file = %d, %v, %v; want 0, false, nil", n, done, err)
	}

	copied := make(chan error, 1)
	go func() {
		n, err := copyStream(dst, src)
		if err == nil && n != int64(len(data)) {
			err = fmt.Errorf("copied %d bytes, want %d", n, len(data))
		}
		dst.Close()
		copied <- err
	}()
	for rest := data[10:]; len(rest) > 0; {
		k := min(len(rest), 100<<10)
		if _, err := in.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	in.Close()
	select {
	case err := <-copied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("copy to file did not end at EOF")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, got, append([]byte("before\n"), data...))
}

// A source that is no fd (like a terminal's console.Console) goes
// through the buffered copy.
func TestCopyFallbackReader(t *testing.T) {
	data := randomData(5, 1<<20)
	dst, out := outFifo(t)
	defer out.Close()
	in := nopWriteCloser{}
	got := transfer(t, copyStream, in, struct{ io.Reader }{bytes.NewReader(data)}, dst, out, data)
	checkSame(t, got, data)
}

type nopWriteCloser struct{}

func (nopWriteCloser) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriteCloser) Close() error                { return nil }

// pio.copy ends when the process's end of the pipe is closed and closes
// the fifo, so containerd sees EOF.
func TestCopyEOFClosesDestination(t *testing.T) {
	src, in := pipe(t)
	defer src.Close()
	dst, out := outFifo(t)
	defer out.Close()
	p := &pio{}
	p.copy(dst, src)
	if _, err := in.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	in.Close()
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		_, err := b.ReadFrom(out) // nonblocking fd in the poller: waits for EOF
		if err != nil {
			t.Error(err)
		}
		got <- b.Bytes()
	}()
	select {
	case b := <-got:
		if string(b) != "hello\n" {
			t.Fatalf("read %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fifo not closed after the source reached EOF")
	}
	waited := make(chan struct{})
	go func() { p.copies.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("copy goroutine still running")
	}
}

func TestCopyConcurrentStreams(t *testing.T) {
	const streams = 16
	var wg sync.WaitGroup
	for i := range streams {
		src, in := pipe(t)
		dst, out := outFifo(t)
		data := randomData(int64(100+i), 512<<10+i*1000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer src.Close()
			defer out.Close()
			got := transfer(t, copyStream, in, src, dst, out, data)
			if !bytes.Equal(got, data) {
				t.Errorf("stream %d: got %d bytes, want %d (or different content)", i, len(got), len(data))
			}
		}()
	}
	wg.Wait()
}

// The copier must not hold the source while it waits for a full
// destination: pio.Close closes the source after the drain timeout, and
// os.File.Close waits for RawConn callbacks on its fd to return.
func TestCopyCloseSourceWhileDestinationFull(t *testing.T) {
	src, in := pipe(t)
	dst, out := outFifo(t)
	defer in.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := copyStream(dst, src)
		dst.Close()
		copied <- err
	}()
	// Nobody reads out: fill the fifo, then leave more in the pipe.
	go func() { _, _ = in.Write(make([]byte, 512<<10)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := fioNRead(out, &n); err != nil {
			t.Fatal(err)
		}
		if n >= 64<<10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the copier is now waiting for out

	closed := make(chan error, 1)
	go func() { closed <- src.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the source hangs while the destination is full")
	}
	select {
	case err := <-copied:
		t.Fatalf("copy returned (%v) while the destination is still full and open", err)
	default:
	}
	// containerd goes away: the copy keeps waiting (the shim holds the
	// fifo open, so there is no EPIPE) ...
	path := out.Name()
	out.Close()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-copied:
		t.Fatalf("copy ended (%v) when the reader left; it must wait for the next one", err)
	default:
	}
	// ... and once a reader makes room it finds the source closed.
	r := openReader(t, path)
	defer r.Close()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	wantCopyError(t, copied, "after the source was closed and a new reader drained the fifo")
}

// wantCopyError waits for a copy that must end with an error.
func wantCopyError(t *testing.T, copied <-chan error, after string) {
	t.Helper()
	select {
	case err := <-copied:
		if err == nil {
			t.Fatalf("copy ended without an error %s", after)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("copy did not end %s", after)
	}
}

func fioNRead(f *os.File, n *int) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = raw.Control(func(fd uintptr) { *n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	if err != nil {
		return err
	}
	return ierr
}

// Closing the stdin fifo (CloseIO path: pio.Close closes it) ends a copy
// that is waiting for input.
func TestCopyCloseIdleSource(t *testing.T) {
	src, in := inFifo(t)
	defer in.Close()
	out, dst := pipe(t)
	defer out.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := copyStream(dst, src)
		copied <- err
	}()
	time.Sleep(50 * time.Millisecond)
	src.Close()
	wantCopyError(t, copied, "after its source fifo was closed")
}

// allocPerStream measures the bytes and allocations one copy of a size
// byte stream costs. The process's writer and containerd's reader run in
// goroutines on blocking fds with raw syscalls and fixed buffers, so they
// allocate nothing themselves, and the copier goes through many rounds of
// waiting for an empty source and a full destination.
func allocPerStream(t testing.TB, copy copyFunc, size int, dstFile func() (io.WriteCloser, func())) (bytesPer, allocsPer float64) {
	const runs = 5
	data := randomData(6, 64<<10)
	var total, mallocs uint64
	for range runs {
		src, in, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		infd := int(in.Fd()) // blocking
		dst, drain := dstFile()
		wrote := make(chan error, 1)
		go func() {
			for rest := size; rest > 0; {
				n, err := unix.Write(infd, data[:min(rest, len(data))])
				if err != nil {
					wrote <- err
					return
				}
				rest -= n
			}
			wrote <- nil
		}()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		go func() { <-wrote; in.Close() }()
		n, err := copy(dst, src)
		runtime.ReadMemStats(&after)
		if err != nil || n != int64(size) {
			t.Fatalf("copy = %d, %v; want %d", n, err, size)
		}
		total += after.TotalAlloc - before.TotalAlloc
		mallocs += after.Mallocs - before.Mallocs
		src.Close()
		dst.Close()
		drain()
	}
	return float64(total) / runs, float64(mallocs) / runs
}

// pipeDst is a pipe drained by a goroutine reading its blocking fd.
func pipeDst(t testing.TB) func() (io.WriteCloser, func()) {
	return func() (io.WriteCloser, func()) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		rfd := int(r.Fd()) // blocking
		done := make(chan struct{})
		go func() {
			defer close(done)
			var buf [16 << 10]byte
			for {
				if n, err := unix.Read(rfd, buf[:]); n <= 0 || err != nil {
					return
				}
			}
		}()
		return w, func() { <-done; r.Close() }
	}
}

func fileDst(t testing.TB) func() (io.WriteCloser, func()) {
	dir := t.TempDir()
	return func() (io.WriteCloser, func()) {
		w, err := openOutput(context.Background(), "file://"+filepath.Join(dir, "log"))
		if err != nil {
			t.Fatal(err)
		}
		return w, func() {}
	}
}

// The point of copyStream: a stream costs no buffer, and nothing is
// allocated per chunk. io.Copy, measured the same way, shows the 32 KiB
// it keeps per stream.
func TestCopyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	ioCopy := func(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }
	stdBytes, _ := allocPerStream(t, ioCopy, 1<<20, pipeDst(t))
	if stdBytes < 32<<10 {
		t.Fatalf("io.Copy allocated %.0f bytes per stream: the measurement does not see its 32 KiB buffer", stdBytes)
	}
	smallBytes, smallAllocs := allocPerStream(t, copyStream, 64<<10, pipeDst(t))
	bigBytes, bigAllocs := allocPerStream(t, copyStream, 16<<20, pipeDst(t))
	// Once the pool holds a buffer, the fallback takes it from there.
	_, _ = allocPerStream(t, copyStream, 1<<20, fileDst(t))
	fileBytes, fileAllocs := allocPerStream(t, copyStream, 16<<20, fileDst(t))
	t.Logf("per stream: io.Copy %.0f B; splice 64 KiB %.0f B in %.1f allocs, 16 MiB %.0f B in %.1f allocs; "+
		"fallback to O_APPEND file 16 MiB %.0f B in %.1f allocs",
		stdBytes, smallBytes, smallAllocs, bigBytes, bigAllocs, fileBytes, fileAllocs)
	// A fixed cost per stream (the splicer, its bound callbacks, the
	// RawConns, a goroutine or two of the test) is fine; anything that
	// grows with the data or a buffer is not.
	if smallBytes > 3<<10 || bigBytes > 3<<10 {
		t.Errorf("splice copy allocated %.0f / %.0f bytes per 64 KiB / 16 MiB stream; want a few hundred", smallBytes, bigBytes)
	}
	if bigAllocs > smallAllocs+16 {
		t.Errorf("splice copy allocates per chunk: %.1f allocs for 16 MiB, %.1f for 64 KiB", bigAllocs, smallAllocs)
	}
	if fileBytes > 3<<10 {
		t.Errorf("fallback copy allocated %.0f bytes per 16 MiB stream; want its pooled buffer reused", fileBytes)
	}
}

func BenchmarkCopyStream(b *testing.B) {
	for _, bc := range []struct {
		name string
		copy copyFunc
	}{
		{"copyStream", copyStream},
		{"io.Copy", func(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var bytesPer float64
			for b.Loop() {
				bytesPer, _ = allocPerStream(b, bc.copy, 1<<20, pipeDst(b))
			}
			b.ReportMetric(bytesPer, "B/stream")
		})
	}
}
