package nodelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// DefaultPoll is how often a following Reader looks for new records. A look
// is a load from the mapped head, not a system call.
const DefaultPoll = 10 * time.Millisecond

// Reader reads a node's log. It never locks the log and never writes to it,
// so however slow its caller, no writer waits for it. A Reader is safe for
// concurrent use.
type Reader struct {
	dir     string
	h       *head
	skipped atomic.Uint64
	// Poll is how often Follow looks for new records (DefaultPoll).
	Poll time.Duration
}

// OpenReader opens the log in dir for reading. It fails when dir holds no
// log yet (no shim has written one).
func OpenReader(dir string) (*Reader, error) {
	h, err := mapHead(dir, false)
	if err != nil {
		return nil, err
	}
	return &Reader{dir: dir, h: h, Poll: DefaultPoll}, nil
}

// Close releases the reader's files.
func (r *Reader) Close() error { return r.h.close() }

// LogID returns the id of the log, which every cursor of it carries.
func (r *Reader) LogID() string { return r.h.logID() }

// Skipped counts the committed lines this reader found unparseable and
// skipped.
func (r *Reader) Skipped() uint64 { return r.skipped.Load() }

// List returns the log's current state and the cursor just after the last
// record it includes.
func (r *Reader) List() (*State, Cursor, error) {
	for range 10 {
		p := r.h.read()
		f, err := os.Open(segmentPath(r.dir, p.seg))
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated and removed meanwhile: look again
		}
		if err != nil {
			return nil, Cursor{}, fmt.Errorf("list: %w", err)
		}
		st := newState()
		_, bad, err := scanLines(f, 0, int64(p.size), func(l *line) error {
			if l.Header == nil {
				st.apply(&l.Record)
			}
			return nil
		})
		f.Close()
		r.skipped.Add(uint64(bad))
		if err != nil {
			return nil, Cursor{}, fmt.Errorf("list: %w", err)
		}
		st.Rev = max(st.Rev, p.seg-1)
		return st, Cursor{Log: r.LogID(), Rev: st.Rev}, nil
	}
	return nil, Cursor{}, fmt.Errorf("list: the log rotates too fast")
}

// Follow calls fn with every record after c, in revision order, waiting for
// new ones, until ctx ends (it then returns ctx's error) or fn returns an
// error (which it returns). A cursor of another log, or of a revision not
// yet written, is ErrInvalidCursor; one older than what the log retains is
// ErrExpired.
func (r *Reader) Follow(ctx context.Context, c Cursor, fn func(*Record) error) error {
	seg, err := r.start(c)
	if err != nil {
		return err
	}
	f, err := os.Open(segmentPath(r.dir, seg))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cursor %s: %w", c, ErrExpired)
	}
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	fl := &follower{r: r, f: f, seg: seg, last: c.Rev, fn: fn}
	defer func() { fl.f.Close() }()
	tick := time.NewTicker(r.Poll)
	defer tick.Stop()
	for {
		moved, err := fl.step()
		if err != nil {
			return err
		}
		if p := r.h.read(); moved || p.seg != fl.seg || int64(p.size) > fl.off {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// start checks c and returns the segment holding the record after it.
func (r *Reader) start(c Cursor) (uint64, error) {
	if c.Log != r.LogID() {
		return 0, fmt.Errorf("cursor %s is of another log (this one is %s): %w", c, r.LogID(), ErrInvalidCursor)
	}
	if c.Rev >= r.h.read().next {
		return 0, fmt.Errorf("cursor %s: revision not written yet: %w", c, ErrInvalidCursor)
	}
	firsts, err := segments(r.dir)
	if err != nil {
		return 0, err
	}
	if len(firsts) == 0 || c.Rev+1 < firsts[0] {
		return 0, fmt.Errorf("cursor %s: %w", c, ErrExpired)
	}
	seg := firsts[0]
	for _, s := range firsts {
		if s <= c.Rev+1 {
			seg = s
		}
	}
	return seg, nil
}

// follower is the position of one Follow.
type follower struct {
	r    *Reader
	f    *os.File
	seg  uint64
	off  int64
	last uint64
	fn   func(*Record) error
}

// step delivers the committed records of the current segment not yet
// delivered. Once a newer segment exists, nothing more is written to this
// one: step reads it to its end and moves on (moved).
func (fl *follower) step() (moved bool, err error) {
	p := fl.r.h.read()
	final := p.seg != fl.seg
	limit := int64(p.size)
	if final {
		fi, err := fl.f.Stat()
		if err != nil {
			return false, fmt.Errorf("follow: %w", err)
		}
		limit = fi.Size()
	}
	off, bad, err := scanLines(fl.f, fl.off, limit, fl.deliver)
	fl.off = off
	fl.r.skipped.Add(uint64(bad))
	if err != nil || !final {
		return false, err
	}
	return true, fl.next()
}

func (fl *follower) deliver(l *line) error {
	if l.Header != nil || l.Snapshot || l.Rev <= fl.last {
		return nil
	}
	fl.last = l.Rev
	return fl.fn(&l.Record)
}

// next opens the segment after the current one. If retention removed it
// while this follower was behind, the records in it are gone: ErrExpired,
// never a silent gap.
func (fl *follower) next() error {
	firsts, err := segments(fl.r.dir)
	if err != nil {
		return err
	}
	for _, s := range firsts {
		if s <= fl.seg {
			continue
		}
		if s > fl.last+1 {
			return fmt.Errorf("follow: records %d to %d removed: %w", fl.last+1, s-1, ErrExpired)
		}
		f, err := os.Open(segmentPath(fl.r.dir, s))
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("follow: segment %d removed: %w", s, ErrExpired)
		}
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		fl.f.Close()
		fl.f, fl.seg, fl.off = f, s, 0
		return nil
	}
	return fmt.Errorf("follow: segment after %d missing", fl.seg)
}
