package nodelog

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDir is where a node's log lives.
const DefaultDir = "/run/containerd-shim-watch-v2/log"

// DirEnv, when set, names the log directory instead of DefaultDir (tests).
const DirEnv = "WATCH_NODE_LOG_DIR"

// Off, as $WATCH_NODE_LOG_DIR, turns the log off: shims write no records
// and Open refuses it. It exists to measure what the log costs a shim.
const Off = "off"

// ErrOff is returned by Open for the directory Off.
var ErrOff = errors.New("nodelog: the log is off")

// Enabled reports whether shims write the log: $WATCH_NODE_LOG_DIR is not Off.
func Enabled() bool { return os.Getenv(DirEnv) != Off }

// Dir returns the log directory: $WATCH_NODE_LOG_DIR, else DefaultDir.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// Defaults of Options.
const (
	DefaultSegmentSize = 4 << 20
	DefaultRetention   = time.Hour
)

// Options tune a Writer. Zero fields take the defaults.
type Options struct {
	// SegmentSize is the size past which a new segment is started.
	SegmentSize int64
	// Retention is how long a segment is kept after its successor was
	// started: a cursor stays valid for at least this long after the
	// records following it were written.
	Retention time.Duration
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	return o
}

// Writer appends records to a node's log. Any number of writers, in any
// number of processes, may append to the same log at once. A Writer is safe
// for concurrent use.
type Writer struct {
	dir  string
	opts Options
	h    *head

	// mu makes the appends and rotations of this process take the lock
	// one at a time: flock does not exclude holders of the same file.
	mu     sync.Mutex
	seg    *os.File // the current segment, as last seen
	segNum uint64
	buf    []byte

	rotating     atomic.Bool
	rotateErrors atomic.Uint64
	rotated      chan struct{} // test hook: a rotation ended
}

// Open opens the log in dir for appending, creating the directory (0700)
// and the log if needed.
func Open(dir string, opts Options) (*Writer, error) {
	if dir == Off {
		return nil, ErrOff
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	h, err := mapHead(dir, true)
	if err != nil {
		return nil, err
	}
	return &Writer{dir: dir, opts: opts.withDefaults(), h: h}, nil
}

// LogID returns the id of the log.
func (w *Writer) LogID() string { return w.h.logID() }

// Append writes rs as the log's next records, in one write, and returns
// the revision of the last (each record's is also set in its Rev). When it
// returns nil the records are in the log, readable by every reader; when it
// returns an error, the log holds no part of any of them.
func (w *Writer) Append(rs ...*Record) (uint64, error) {
	bodies := make([][]byte, len(rs))
	for i, r := range rs {
		if r.Time.IsZero() {
			r.Time = time.Now().UTC()
		}
		body, err := encodeBody(r)
		if err != nil {
			return 0, err
		}
		bodies[i] = body
	}
	if len(rs) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.h.lock(); err != nil {
		return 0, fmt.Errorf("lock log: %w", err)
	}
	p, err := w.appendLocked(bodies)
	w.h.unlock()
	if err != nil {
		return 0, err
	}
	first := p.next - uint64(len(rs))
	for i, r := range rs {
		r.Rev = first + uint64(i)
	}
	if int64(p.size-p.base) >= w.opts.SegmentSize && w.rotating.CompareAndSwap(false, true) {
		go w.rotate()
	}
	return p.next - 1, nil
}

// appendLocked writes records under the lock: it first repairs what a
// writer that died mid-write left, then writes the records at the committed
// end and commits them. It returns the new position.
func (w *Writer) appendLocked(bodies [][]byte) (position, error) {
	p := w.h.readLocked()
	if err := w.current(p.seg); err != nil {
		return p, err
	}
	if w.h.load(offWriting) != 0 {
		if err := w.seg.Truncate(int64(p.size)); err != nil {
			return p, fmt.Errorf("repair log segment: %w", err)
		}
		w.h.store(offWriting, 0)
	}
	w.buf = w.buf[:0]
	for i, body := range bodies {
		w.buf = withRev(w.buf, p.next+uint64(i), body)
	}
	w.h.store(offWriting, 1)
	n, err := writeAt(w.seg, w.buf, int64(p.size))
	if err == nil && n < len(w.buf) {
		err = fmt.Errorf("short write")
	}
	if err != nil {
		if w.seg.Truncate(int64(p.size)) == nil {
			w.h.store(offWriting, 0)
		}
		return p, fmt.Errorf("write log: %w", err)
	}
	p.next += uint64(len(bodies))
	p.size += uint64(n)
	w.h.set(p)
	w.h.store(offWriting, 0)
	return p, nil
}

// writeAt is the write that tests make fail.
var writeAt = (*os.File).WriteAt

// current makes w.seg the segment seg (the head's current one).
func (w *Writer) current(seg uint64) error {
	if w.seg != nil && w.segNum == seg {
		return nil
	}
	f, err := openSegment(w.dir, seg)
	if err != nil {
		return err
	}
	if w.seg != nil {
		w.seg.Close()
	}
	w.seg, w.segNum = f, seg
	return nil
}

// Close releases the log's files. A rotation in progress ends first.
func (w *Writer) Close() error {
	for w.rotating.Load() {
		time.Sleep(time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seg != nil {
		w.seg.Close()
	}
	return w.h.close()
}

// Environment variables that configure the shims' log (containerd's
// environment is theirs): a size in bytes and a Go duration.
const (
	SegmentSizeEnv = "WATCH_NODE_LOG_SEGMENT_SIZE"
	RetentionEnv   = "WATCH_NODE_LOG_RETENTION"
)

// EnvOptions returns the Options set by SegmentSizeEnv and RetentionEnv;
// an unset or invalid value leaves the default.
func EnvOptions() Options {
	var o Options
	if n, err := strconv.ParseInt(os.Getenv(SegmentSizeEnv), 10, 64); err == nil {
		o.SegmentSize = n
	}
	if d, err := time.ParseDuration(os.Getenv(RetentionEnv)); err == nil {
		o.Retention = d
	}
	return o.withDefaults()
}
