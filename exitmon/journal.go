package exitmon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// JournalName is the file, inside a task's bundle, that holds its exits.
const JournalName = "watch-exits.jsonl"

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
}

// record is one line of the journal.
type record struct {
	Task   *Identity `json:"task,omitempty"`
	ExecID string    `json:"exec_id,omitempty"`
	Exit   *Status   `json:"exit,omitempty"`
}

// Journal is an append-only record of a task's exits. An exit is written
// before any waiter or event learns of it. It is written, not fsynced: the
// journal must outlive the shim process, and a completed write(2) does
// (the page cache belongs to the kernel). It need not outlive the kernel:
// a reboot ends every container, and containerd keeps bundles on tmpfs.
type Journal struct {
	mu sync.Mutex
	f  *os.File
}

// CreateJournal opens (creating if needed) the journal in bundle and
// records the task's identity.
func CreateJournal(bundle string, id Identity) (*Journal, error) {
	f, err := os.OpenFile(filepath.Join(bundle, JournalName), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := endTornLine(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j := &Journal{f: f}
	if err := j.append(record{Task: &id}); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// endTornLine ends a torn last line (left by a shim that died while
// writing it), so the first record appended after it stays readable.
func endTornLine(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// Exit records how the process execID ("" for init) ended.
func (j *Journal) Exit(execID string, st Status) error {
	return j.append(record{ExecID: execID, Exit: &st})
}

func (j *Journal) append(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

// Replay is what a journal holds.
type Replay struct {
	Identity Identity
	// Init is the init process's exit, if it was recorded.
	Init *Status
	// Execs holds the last recorded exit of each exec.
	Execs map[string]Status
}

// ReadJournal reads the journal in bundle. A torn last line (the shim died
// while writing it) is ignored: that exit was never reported to anyone.
func ReadJournal(bundle string) (*Replay, error) {
	f, err := os.Open(filepath.Join(bundle, JournalName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &Replay{Execs: map[string]Status{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		r.apply(rec)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return nil, err
	}
	return r, nil
}

func (r *Replay) apply(rec record) {
	switch {
	case rec.Task != nil:
		r.Identity = *rec.Task
	case rec.Exit != nil && rec.ExecID == "":
		st := *rec.Exit
		r.Init = &st
	case rec.Exit != nil:
		r.Execs[rec.ExecID] = *rec.Exit
	}
}
