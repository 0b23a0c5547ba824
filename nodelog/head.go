package nodelog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The head file: a page mapped shared by every writer and reader.
const (
	headName = "head"
	headSize = 4096
	logIDLen = 16

	offMagic   = 0
	offLogID   = 8
	offGen     = 24 // seqlock: odd while a writer changes the fields below
	offNext    = 32 // next revision to assign
	offSeg     = 40 // first revision of the current segment
	offSize    = 48 // committed bytes of the current segment
	offWriting = 56 // 1 while a record is being written
	offBase    = 64 // bytes of the current segment's header and snapshot
)

var headMagic = [8]byte{'W', 'A', 'T', 'C', 'H', 'L', 'G', '1'}

// head is the mapped head file.
type head struct {
	f *os.File
	m []byte
}

func (h *head) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&h.m[off])) }

func (h *head) load(off int) uint64     { return atomic.LoadUint64(h.word(off)) }
func (h *head) store(off int, v uint64) { atomic.StoreUint64(h.word(off), v) }

// logID returns the log's id as hex.
func (h *head) logID() string { return hex.EncodeToString(h.m[offLogID : offLogID+logIDLen]) }

// position is the head's view of the log at one moment.
type position struct {
	next, seg, size, base uint64
}

// read returns a consistent position without the lock (a seqlock read).
func (h *head) read() position {
	for {
		g := h.load(offGen)
		if g&1 == 1 {
			runtime.Gosched()
			continue
		}
		p := position{next: h.load(offNext), seg: h.load(offSeg), size: h.load(offSize), base: h.load(offBase)}
		if h.load(offGen) == g {
			return p
		}
	}
}

// readLocked returns the position under the lock. A writer that died in
// the middle of set left the sequence odd: its fields are taken as they
// are (at worst a revision is skipped, never reused).
func (h *head) readLocked() position {
	if g := h.load(offGen); g&1 == 1 {
		h.store(offGen, g+1)
	}
	return h.read()
}

// set changes the position; the caller holds the lock.
func (h *head) set(p position) {
	h.store(offGen, h.load(offGen)+1)
	h.store(offNext, p.next)
	h.store(offSeg, p.seg)
	h.store(offSize, p.size)
	h.store(offBase, p.base)
	h.store(offGen, h.load(offGen)+1)
}

func (h *head) lock() error {
	for {
		err := unix.Flock(int(h.f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

func (h *head) unlock() { _ = unix.Flock(int(h.f.Fd()), unix.LOCK_UN) }

func (h *head) close() error {
	err := unix.Munmap(h.m)
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// errNoLog is returned when a reader finds no log in its directory.
var errNoLog = errors.New("nodelog: no log yet (no shim has written one since boot)")

// mapHead maps the head file of dir, read-write for writers (creating it
// and the log's first segment if needed), read-only for readers.
func mapHead(dir string, write bool) (*head, error) {
	flags, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flags, prot = os.O_RDWR|os.O_CREATE, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(headPath(dir), flags|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrNotExist) && !write {
		return nil, fmt.Errorf("open %s: %w", dir, errNoLog)
	}
	if err != nil {
		return nil, fmt.Errorf("open log head: %w", err)
	}
	h := &head{f: f}
	if write {
		if err := h.initialize(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < headSize {
		err = fmt.Errorf("%s: %w", headPath(dir), errNoLog)
	}
	if err == nil {
		h.m, err = unix.Mmap(int(f.Fd()), 0, headSize, prot, unix.MAP_SHARED)
	}
	if err == nil && [8]byte(h.m[:8]) != headMagic {
		unix.Munmap(h.m)
		err = fmt.Errorf("%s: not a log head: %w", headPath(dir), errNoLog)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map log head: %w", err)
	}
	return h, nil
}

func headPath(dir string) string { return dir + "/" + headName }

// initialize writes a new log's head and first segment, under the lock,
// unless another writer already did.
func (h *head) initialize(dir string) error {
	if err := h.lock(); err != nil {
		return fmt.Errorf("lock log head: %w", err)
	}
	defer h.unlock()
	fi, err := h.f.Stat()
	if err != nil || fi.Size() >= headSize {
		return err
	}
	b := make([]byte, headSize)
	copy(b, headMagic[:])
	if _, err := rand.Read(b[offLogID : offLogID+logIDLen]); err != nil {
		return err
	}
	id := hex.EncodeToString(b[offLogID : offLogID+logIDLen])
	size, err := createSegment(dir, id, 1, nil)
	if err != nil {
		return err
	}
	*(*uint64)(unsafe.Pointer(&b[offNext])) = 1
	*(*uint64)(unsafe.Pointer(&b[offSeg])) = 1
	*(*uint64)(unsafe.Pointer(&b[offSize])) = uint64(size)
	*(*uint64)(unsafe.Pointer(&b[offBase])) = uint64(size)
	if _, err := h.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write log head: %w", err)
	}
	return nil
}
