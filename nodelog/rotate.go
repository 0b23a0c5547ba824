package nodelog

import (
	"fmt"
	"os"
	"time"
)

// rotate starts the next segment with a snapshot of the live state, then
// removes segments past retention. It runs in the background of the append
// that filled the segment; its error is counted, and the next append past
// the size tries again.
func (w *Writer) rotate() {
	defer func() {
		w.rotating.Store(false)
		if w.rotated != nil {
			w.rotated <- struct{}{}
		}
	}()
	if err := w.rotateOnce(); err != nil {
		w.rotateErrors.Add(1)
		return
	}
	w.retain(time.Now())
}

// rotateOnce replays the current segment into a state (most of it before
// taking the lock, then the tail under it), writes the next segment
// starting with that state's snapshot and makes it current.
func (w *Writer) rotateOnce() error {
	p := w.h.read()
	f, err := openSegment(w.dir, p.seg)
	if err != nil {
		return err
	}
	defer f.Close()
	st := newState()
	apply := func(l *line) error {
		if l.Header == nil {
			st.apply(&l.Record)
		}
		return nil
	}
	off, _, err := scanLines(f, 0, int64(p.size), apply)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.h.lock(); err != nil {
		return fmt.Errorf("rotate: lock log: %w", err)
	}
	defer w.h.unlock()
	q := w.h.readLocked()
	if q.seg != p.seg || q.next == q.seg {
		return nil // another writer rotated
	}
	if w.h.load(offWriting) != 0 {
		if err := f.Truncate(int64(q.size)); err != nil {
			return fmt.Errorf("rotate: repair segment: %w", err)
		}
		w.h.store(offWriting, 0)
	}
	if _, _, err := scanLines(f, off, int64(q.size), apply); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	snap, err := st.snapshot()
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	w.removeOrphans(q.seg)
	size, err := createSegment(w.dir, w.h.logID(), q.next, snap)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	w.h.set(position{next: q.next, seg: q.next, size: uint64(size), base: uint64(size)})
	return nil
}

// removeOrphans removes segments newer than the current one: a writer
// that died in a rotation between creating a segment and switching the head
// to it leaves one, which no record will ever go to.
func (w *Writer) removeOrphans(current uint64) {
	firsts, _ := segments(w.dir)
	for _, f := range firsts {
		if f > current {
			os.Remove(segmentPath(w.dir, f))
		}
	}
}

// retain removes the oldest segments whose successor was started more than
// the retention ago; the newest segment always stays.
func (w *Writer) retain(now time.Time) {
	firsts, err := segments(w.dir)
	if err != nil {
		return
	}
	for i := 0; i+1 < len(firsts); i++ {
		h, err := readHeader(w.dir, firsts[i+1])
		if err != nil || now.Sub(h.Created) < w.opts.Retention {
			return
		}
		if err := os.Remove(segmentPath(w.dir, firsts[i])); err != nil && !os.IsNotExist(err) {
			return
		}
	}
}

// RotateErrors counts rotations that failed.
func (w *Writer) RotateErrors() uint64 { return w.rotateErrors.Load() }
