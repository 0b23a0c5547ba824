package exitmon

import (
	"context"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// NodeLog is the node lifecycle log (nodelog.Writer). A domain appends each
// transition of its task to it before the transition's event is queued for
// containerd and before any Wait learns of it. It is also the shim's exit
// journal: an exit is appended once, as it is reaped, and `shim delete`
// reads it from there after the shim died. An append that fails is counted
// and otherwise ignored: the event still goes to containerd.
//
// The log's order is the order of the task's events but for one case:
// an init that exits while execs still run is recorded when it is reaped,
// before the execs' exits, while containerd is told of it after them.
type NodeLog interface {
	Append(...*nodelog.Record) (uint64, error)
}

// SetNodeLog makes every domain of m record its transitions to l. Call it
// before the first domain is created.
func (m *Monitor) SetNodeLog(l NodeLog) { m.nodeLog = l }

// events maps the topics of the events a domain publishes to the log's
// events; a topic not here (checkpointed) is not recorded.
var events = map[string]string{
	"/tasks/create":       nodelog.EventCreated,
	"/tasks/start":        nodelog.EventStarted,
	"/tasks/exec-added":   nodelog.EventExecAdded,
	"/tasks/exec-started": nodelog.EventExecStarted,
	TopicExit:             nodelog.EventExited,
	TopicOOM:              nodelog.EventOOM,
	"/tasks/paused":       nodelog.EventPaused,
	"/tasks/resumed":      nodelog.EventResumed,
	"/tasks/delete":       nodelog.EventDeleted,
}

// Getters of containerd's event types (protobuf messages) that a record
// takes its fields from, so exitmon need not know those types.
type (
	execIDer     interface{ GetExecID() string }
	pider        interface{ GetPid() uint32 }
	exitStatuser interface{ GetExitStatus() uint32 }
)

// recordLocked appends the record of the event ev (topic) of process p
// (nil when the event is not a process's) to the node log.
func (t *Domain) recordLocked(topic string, ev any, p *Exit) {
	if t.mon.nodeLog == nil {
		return
	}
	event, ok := events[topic]
	if !ok {
		return
	}
	r := t.baseRecord(event)
	switch e := ev.(type) {
	case ExitEvent:
		r.ExecID = e.ExecID
		setExit(r, e.Status)
	case execIDer:
		r.ExecID = e.GetExecID()
	}
	if e, ok := ev.(pider); ok {
		r.Pid = int(e.GetPid())
	}
	if e, ok := ev.(exitStatuser); ok && event == nodelog.EventDeleted {
		code := e.GetExitStatus()
		r.ExitStatus = &code
	}
	if r.ExecID != "" {
		r.Kind = nodelog.KindExec
	}
	if p == nil && r.ExecID == "" {
		p = t.init
	}
	if p != nil {
		r.PidNS, r.MntNS = p.pidNS, p.mntNS
	}
	t.mon.appendLog(r)
}

// recordExitLocked appends the exit st of p, as it is reaped: the exit's
// one write. When p's Start is still being answered, the start goes first
// in the same write (its event is queued later, with the Start's answer),
// so that the log never holds an exit before its start. An init's OOM goes
// just before its exit, as its event does. Nothing is recorded after the
// task's deletion.
func (t *Domain) recordExitLocked(p *Exit, st Status) {
	if t.mon.nodeLog == nil || t.deleted {
		return
	}
	recs := make([]*nodelog.Record, 0, 3)
	if p.starting && !p.startLogged {
		event := nodelog.EventStarted
		if p.execID != "" {
			event = nodelog.EventExecStarted
		}
		r := t.processRecord(event, p)
		r.Pid = p.pid
		recs = append(recs, r)
		p.startLogged = true
	}
	if p.execID == "" && st.OOM {
		recs = append(recs, t.processRecord(nodelog.EventOOM, p))
	}
	r := t.processRecord(nodelog.EventExited, p)
	setExit(r, st)
	t.mon.appendLog(append(recs, r)...)
}

// processRecord is a record of p's with its namespaces.
func (t *Domain) processRecord(event string, p *Exit) *nodelog.Record {
	r := t.baseRecord(event)
	if p.execID != "" {
		r.Kind, r.ExecID = nodelog.KindExec, p.execID
	}
	r.PidNS, r.MntNS = p.pidNS, p.mntNS
	return r
}

// recordExecDeleted appends the deletion of an exec (containerd has no
// event for it) to the node log.
func (t *Domain) recordExecDeleted(execID string) {
	if t.mon.nodeLog == nil {
		return
	}
	r := t.baseRecord(nodelog.EventDeleted)
	r.Kind, r.ExecID = nodelog.KindExec, execID
	t.mon.appendLog(r)
}

func (t *Domain) baseRecord(event string) *nodelog.Record { return recordOf(t.who, event) }

// DeletedRecord is the record of a task's deletion by `shim delete`, after
// the shim that served it died: it carries the exit status that command
// reports.
func DeletedRecord(who Identity, st Status) *nodelog.Record {
	r := recordOf(who, nodelog.EventDeleted)
	setExit(r, st)
	return r
}

// Logged is what the node log holds of a task, as `shim delete` reads it.
// Its identity and, when its init's exit was recorded, that exit.
func Logged(r nodelog.Record) (Identity, *Status) {
	who := Identity{
		ID: r.ContainerID, Namespace: r.Namespace, Sandbox: r.Kind == nodelog.KindSandbox, SandboxID: r.SandboxID,
		PodName: r.PodName, PodNamespace: r.PodNamespace, PodUID: r.PodUID, ContainerName: r.ContainerName, Image: r.Image,
	}
	if r.ExitStatus == nil {
		return who, nil
	}
	st := &Status{Pid: r.Pid, Code: int(*r.ExitStatus), OOM: r.OOM}
	if r.ExitedAt != nil {
		st.ExitedAt = *r.ExitedAt
	}
	return who, st
}

func recordOf(w Identity, event string) *nodelog.Record {
	kind := nodelog.KindContainer
	if w.Sandbox {
		kind = nodelog.KindSandbox
	}
	return &nodelog.Record{
		Time: time.Now().UTC(), Event: event, Kind: kind,
		Namespace: w.Namespace, SandboxID: w.SandboxID, ContainerID: w.ID,
		PodName: w.PodName, PodNamespace: w.PodNamespace, PodUID: w.PodUID,
		ContainerName: w.ContainerName, Image: w.Image,
	}
}

func setExit(r *nodelog.Record, st Status) {
	code := uint32(st.Code)
	at := st.ExitedAt.UTC()
	r.Pid, r.ExitStatus, r.ExitedAt, r.OOM = st.Pid, &code, &at, st.OOM
	if st.Code > 128 && st.Code < 128+65 {
		r.Signal = st.Code - 128
	}
}

func (m *Monitor) appendLog(rs ...*nodelog.Record) {
	n := uint64(len(rs))
	if _, err := m.nodeLog.Append(rs...); err != nil {
		if m.logFailed.Add(n) == n {
			logger(context.Background()).WithError(err).Warn("node log: first failed append")
		}
		return
	}
	m.logAppended.Add(n)
}

// namespacesOf returns the inode numbers of the pid and mount namespaces of
// pid, or zeros when they cannot be trusted: the process is gone, or the
// pid may have been reused (its pidfd, when it has one, says whether the
// process the stat saw was still ours).
func namespacesOf(pid, pidfd int) (pidNS, mntNS uint64) {
	var a, b unix.Stat_t
	dir := "/proc/" + strconv.Itoa(pid) + "/ns/"
	if unix.Stat(dir+"pid", &a) != nil || unix.Stat(dir+"mnt", &b) != nil {
		return 0, 0
	}
	if pidfd >= 0 && unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		return 0, 0
	}
	return a.Ino, b.Ino
}
