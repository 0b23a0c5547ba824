package exitmon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// JournalName is the file, inside a task's bundle, that holds its exits.
const JournalName = "watch-exits.jsonl"

// compactName is the file a compaction writes before renaming it over the
// journal; a crash can leave it behind, and the next compaction overwrites it.
const compactName = JournalName + ".tmp"

// compactMin is how many bytes of dead records a journal may hold before it
// is rewritten: it bounds the journal of a task with few live execs, and
// makes a rewrite rare next to the appends it saves.
const compactMin = 4096

// Identity tells what a task is within its pod. It is written to the
// journal once and attached to everything the shim reports.
type Identity struct {
	ID           string `json:"id"`
	Namespace    string `json:"namespace,omitempty"`
	Sandbox      bool   `json:"sandbox"`
	SandboxID    string `json:"sandbox_id,omitempty"`
	PodName      string `json:"pod_name,omitempty"`
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodUID       string `json:"pod_uid,omitempty"`
	// ContainerName and Image are CRI's names of a workload container.
	ContainerName string `json:"container_name,omitempty"`
	Image         string `json:"image,omitempty"`
}

// record is one line of the journal: a task (which starts a new history),
// an exit, or the deletion of an exec whose exit was recorded.
type record struct {
	Task    *Identity `json:"task,omitempty"`
	ExecID  string    `json:"exec_id,omitempty"`
	Exit    *Status   `json:"exit,omitempty"`
	Deleted bool      `json:"deleted,omitempty"`
}

// journal is the record of a task's exits, appended to as they happen.
// An exit is written before any waiter or event learns of it. It is
// written, not fsynced: the journal must outlive the shim process, and a
// completed write(2) does (the page cache belongs to the kernel). It need
// not outlive the kernel: a reboot ends every container, and containerd
// keeps bundles on tmpfs.
//
// The journal stays bounded: once the records of deleted execs outweigh
// both compactMin and the live ones, it is rewritten to a new file holding
// only the task, the init's exit and the exits of execs not yet deleted,
// which is renamed over the old one. Either file, at any moment, replays to
// every exit reported and not yet deleted. A journal is safe for
// concurrent use.
type journal struct {
	path string

	mu      sync.Mutex
	f       *os.File
	size    int64  // bytes in f
	torn    bool   // f ends in a partly written record
	task    []byte // the task's record
	init    []byte // the init's exit record, if any
	execs   map[string][]byte
	live    int64 // bytes of task, init and execs
	retryAt int64 // size before which a failed compaction is not retried
	closed  bool
}

// createJournal opens (creating if needed) the journal in bundle and
// records the task's identity. Records already in it belong to an earlier
// task of the same bundle: they no longer replay, and go at the next
// compaction.
func createJournal(bundle string, id Identity) (*journal, error) {
	path := filepath.Join(bundle, JournalName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	size, err := endTornLine(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &journal{path: path, f: f, size: size, execs: map[string][]byte{}}
	line, err := encode(record{Task: &id})
	if err == nil {
		err = j.write(line)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	j.task, j.live = line, int64(len(line))
	j.compactIfDue()
	return j, nil
}

// endTornLine ends a torn last line (left by a shim that died while
// writing it), so the first record appended after it stays readable. It
// returns the size of the file.
func endTornLine(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return fi.Size(), nil
	}
	_, err = f.Write([]byte{'\n'})
	return fi.Size() + 1, err
}

func encode(r record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode journal record: %w", err)
	}
	return append(b, '\n'), nil
}

// Exit records how the process execID ("" for init) ended. The record
// replaces an earlier one of the same process. It never compacts, so the
// reaper never waits for a rewrite: records go dead only when an exec is
// removed (an exec id is reused only after that) or a task re-created.
func (j *journal) Exit(execID string, st Status) error {
	line, err := encode(record{ExecID: execID, Exit: &st})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.write(line); err != nil {
		return err
	}
	var prev []byte
	if execID == "" {
		prev, j.init = j.init, line
	} else {
		prev, j.execs[execID] = j.execs[execID], line
	}
	j.live += int64(len(line) - len(prev))
	return nil
}

// Remove forgets the exit of execID once the exec is deleted: it no longer
// replays, and its record goes at the next compaction. An exec whose exit
// was never recorded costs nothing.
func (j *journal) Remove(execID string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	prev, ok := j.execs[execID]
	if !ok || j.closed {
		return nil
	}
	line, err := encode(record{ExecID: execID, Deleted: true})
	if err != nil {
		return err
	}
	if err := j.write(line); err != nil {
		return err
	}
	delete(j.execs, execID)
	j.live -= int64(len(prev))
	j.compactIfDue()
	return nil
}

func (j *journal) write(line []byte) error {
	if j.closed {
		return fmt.Errorf("write journal: %w", os.ErrClosed)
	}
	if j.torn {
		line = append([]byte{'\n'}, line...)
	}
	n, err := writeFile(j.f, line)
	j.size += int64(n)
	j.torn = n > 0 && line[n-1] != '\n'
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

// compactIfDue rewrites the journal once its dead bytes reach both
// compactMin and its live bytes, so a rewrite costs no more than the
// appends since the last one. A failed rewrite is logged, not returned:
// the record was written, and the old journal is still whole. It is
// retried after as many bytes again.
func (j *journal) compactIfDue() {
	if dead := j.size - j.live; dead < compactMin || dead < j.live || j.size < j.retryAt {
		return
	}
	if err := j.compact(); err != nil {
		j.retryAt = j.size + max(compactMin, j.live)
		logger(context.Background()).WithError(err).WithField("path", j.path).Warn("compact journal")
	}
}

// compact writes the live records to a new file and renames it over the
// journal. Until the rename the old journal is whole; after it, the new
// one is. On failure the journal keeps appending to the old file.
func (j *journal) compact() error {
	tmp := filepath.Join(filepath.Dir(j.path), compactName)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	buf := liveRecords(j.task, j.init, j.execs, j.live)
	if _, err = f.Write(buf); err == nil {
		err = rename(tmp, j.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	j.f.Close()
	j.f, j.size, j.retryAt = f, int64(len(buf)), 0
	return nil
}

// liveRecords lays out a compacted journal: the task first, since a task
// record starts a new history, then the exits.
func liveRecords(task, init []byte, execs map[string][]byte, size int64) []byte {
	buf := make([]byte, 0, size)
	buf = append(append(buf, task...), init...)
	for _, line := range execs {
		buf = append(buf, line...)
	}
	return buf
}

// rename and writeFile are the journal's calls that tests make fail.
var (
	rename    = os.Rename
	writeFile = (*os.File).Write
)

// Close closes the journal file; later records are refused.
func (j *journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	return j.f.Close()
}

// Replay is what a journal holds.
type Replay struct {
	Identity Identity
	// Init is the init process's exit, if it was recorded.
	Init *Status
	// execs holds the last recorded exit of each exec not yet deleted.
	execs map[string]Status
}

// ReadJournal reads the journal in bundle. Only the last task recorded
// counts: what came before it belongs to an earlier task of the bundle.
// A line that does not parse, such as a torn last line (the shim died
// while writing it, so that exit was never reported to anyone), is ignored.
func ReadJournal(bundle string) (*Replay, error) {
	f, err := os.Open(filepath.Join(bundle, JournalName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := readReplay(f)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return r, nil
}

// readReplay replays the records read from rd.
func readReplay(rd io.Reader) (*Replay, error) {
	r := &Replay{execs: map[string]Status{}}
	br := bufio.NewReader(rd)
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			var rec record
			if json.Unmarshal(line, &rec) == nil {
				r.apply(rec)
			}
		}
		if err == io.EOF {
			return r, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// maxLine is longer than any record the journal writes.
const maxLine = 64 << 10

// readLine returns the next line. A line longer than maxLine is not a
// record the journal writes: it is skipped, and the lines after it read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	long := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		line, err = br.ReadSlice('\n')
		if len(long) <= maxLine {
			long = append(long, line...)
		}
	}
	if len(long) > maxLine {
		return nil, err
	}
	return long, err
}

func (r *Replay) apply(rec record) {
	switch {
	case rec.Task != nil:
		*r = Replay{Identity: *rec.Task, execs: map[string]Status{}}
	case rec.ExecID == "" && rec.Exit != nil:
		st := *rec.Exit
		r.Init = &st
	case rec.Deleted:
		delete(r.execs, rec.ExecID)
	case rec.Exit != nil:
		r.execs[rec.ExecID] = *rec.Exit
	}
}
