package nodelog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Events a record can carry.
const (
	EventCreated     = "created"
	EventStarted     = "started"
	EventExecAdded   = "exec_added"
	EventExecStarted = "exec_started"
	EventExited      = "exited"
	EventOOM         = "oom"
	EventPaused      = "paused"
	EventResumed     = "resumed"
	EventDeleted     = "deleted"
)

// Kinds of what a record is about.
const (
	KindSandbox   = "sandbox"   // a pod's pause container
	KindContainer = "container" // a workload container
	KindExec      = "exec"      // an exec process in a container
)

// Record is one transition of one task or exec, with the identity of its pod.
type Record struct {
	// Rev is the record's revision, assigned by Append.
	Rev   uint64    `json:"rev"`
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	Kind  string    `json:"kind"`
	// Snapshot marks a copy of an earlier record at the start of a segment.
	Snapshot bool `json:"snapshot,omitempty"`

	Namespace     string `json:"namespace"`
	SandboxID     string `json:"sandbox_id,omitempty"`
	ContainerID   string `json:"container_id"`
	ExecID        string `json:"exec_id,omitempty"`
	PodName       string `json:"pod_name,omitempty"`
	PodNamespace  string `json:"pod_namespace,omitempty"`
	PodUID        string `json:"pod_uid,omitempty"`
	ContainerName string `json:"container_name,omitempty"`
	Image         string `json:"image,omitempty"`

	Pid int `json:"pid,omitempty"`
	// PidNS and MntNS are the inode numbers of the process's pid and mount
	// namespaces, read while the process was alive (0 when it was not).
	PidNS uint64 `json:"pidns,omitempty"`
	MntNS uint64 `json:"mntns,omitempty"`

	ExitStatus *uint32    `json:"exit_status,omitempty"`
	ExitedAt   *time.Time `json:"exited_at,omitempty"`
	Signal     int        `json:"signal,omitempty"`
	OOM        bool       `json:"oom,omitempty"`
}

// Key identifies what a record is about: a task (ExecID empty) or an exec.
type Key struct{ Namespace, ContainerID, ExecID string }

// Key returns the key of what r is about.
func (r *Record) Key() Key { return Key{r.Namespace, r.ContainerID, r.ExecID} }

// header is a segment's first line.
type header struct {
	Log     string    `json:"log"`
	First   uint64    `json:"first"`
	Created time.Time `json:"created"`
}

// line is any line of a segment: a header or a record.
type line struct {
	Header *header `json:"header,omitempty"`
	Record
}

// encodeBody encodes r without its revision, as the tail of a JSON object
// (everything after the opening brace), so that Append only prefixes the
// revision under the lock.
func encodeBody(r *Record) ([]byte, error) {
	rev := r.Rev
	r.Rev = 0
	b, err := json.Marshal(r)
	r.Rev = rev
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	// b is {"rev":0,...}: drop through the first comma.
	const prefix = `{"rev":0,`
	return b[len(prefix):], nil
}

// withRev makes a complete line from a body of encodeBody.
func withRev(dst []byte, rev uint64, body []byte) []byte {
	dst = append(dst, `{"rev":`...)
	dst = strconv.AppendUint(dst, rev, 10)
	dst = append(dst, ',')
	dst = append(dst, body...)
	return append(dst, '\n')
}

// parseLine parses one line (without its newline).
func parseLine(b []byte) (*line, error) {
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if l.Header == nil && (l.Rev == 0 || l.Event == "") {
		return nil, fmt.Errorf("record without revision or event")
	}
	return &l, nil
}
