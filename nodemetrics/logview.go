package nodemetrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// Exit reasons, as kube-state-metrics' last_terminated_reason names them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// podLabels identify a pod's series: namespace, pod, uid.
type podLabels struct{ namespace, pod, uid string }

// terminated is a container's last exit.
type terminated struct {
	code   uint32
	reason string
	at     time.Time
}

// exitKey is one series of watch_exits_total within a pod.
type exitKey struct {
	container, kind, reason string
	code                    uint32
}

// owner holds the series of one pod (or of one container outside a pod).
type owner struct {
	labels    podLabels
	last      map[string]terminated // by container name
	exits     map[exitKey]uint64
	deletedAt time.Time // zero while the pod exists
}

// logView is what the Collector has learned from the log since it started.
// It is not safe for concurrent use: the Collector serializes scrapes.
type logView struct {
	dir    string
	client *watchapi.Client
	// cursor is where the next scrape continues; "" before the first read.
	cursor  string
	missing bool // the log did not exist at a read: count it from its start
	owners  map[string]*owner
	// exited holds the tasks and execs whose exit was counted, so that
	// their deletion (which repeats the status) is not counted again.
	exited  map[nodelog.Key]bool
	oom     map[nodelog.Key]bool
	relists uint64
	state   *watchapi.State // the log's state at the last read
}

func newLogView(dir string) *logView {
	return &logView{dir: dir, owners: map[string]*owner{}, exited: map[nodelog.Key]bool{}, oom: map[nodelog.Key]bool{}}
}

// readTimeout bounds catching up with the log in one scrape.
const readTimeout = 10 * time.Second

// update reads the records written since the last update. The first time
// the log exists it starts from its current state, or from its first record
// when an earlier update found no log (every record is then news).
func (v *logView) update() error {
	if v.client == nil {
		c, err := watchapi.Open(v.dir)
		if err != nil {
			v.missing = true
			return fmt.Errorf("open node log: %w", err)
		}
		v.client = c
	}
	st, err := v.client.List()
	if err != nil {
		return fmt.Errorf("list node log: %w", err)
	}
	v.state = st
	if v.cursor == "" {
		v.cursor = v.startCursor(st)
	}
	err = v.follow(st.Cursor)
	if errors.Is(err, watchapi.ErrExpired) || errors.Is(err, watchapi.ErrInvalidCursor) {
		// Away longer than the log keeps, or a new log: what happened
		// meanwhile is lost; the state says how things ended.
		v.relists++
		v.cursor = st.Cursor
		v.applyState(st)
		return nil
	}
	return err
}

// startCursor returns where a first read starts.
func (v *logView) startCursor(st *watchapi.State) string {
	if v.missing {
		if c, err := nodelog.ParseCursor(st.Cursor); err == nil {
			return nodelog.Cursor{Log: c.Log}.String()
		}
	}
	v.applyState(st)
	return st.Cursor
}

// applyState takes the last exits of the containers alive in st, without
// counting them as exits seen.
func (v *logView) applyState(st *watchapi.State) {
	for i := range st.Items {
		r := &st.Items[i]
		if r.ExitStatus == nil {
			continue
		}
		v.exited[r.Key()] = true
		if r.Kind == nodelog.KindContainer {
			v.ownerOf(r).last[containerLabel(r)] = terminatedOf(r, r.OOM)
		}
	}
}

// follow applies every record after v.cursor up to end.
func (v *logView) follow(end string) error {
	if end == v.cursor {
		return nil
	}
	stop, err := nodelog.ParseCursor(end)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	for ev, err := range v.client.Watch(ctx, v.cursor) {
		if errors.Is(err, context.DeadlineExceeded) {
			// The last record up to end was unparseable (skipped and
			// counted): nothing more will come before end.
			v.cursor = end
			return nil
		}
		if err != nil {
			return fmt.Errorf("read node log: %w", err)
		}
		v.apply(&ev.Record)
		v.cursor = ev.Cursor
		if ev.Record.Rev >= stop.Rev {
			return nil
		}
	}
	return nil
}

// apply learns one record.
func (v *logView) apply(r *nodelog.Record) {
	k := r.Key()
	switch r.Event {
	case nodelog.EventOOM:
		v.oom[k] = true
	case nodelog.EventExited:
		v.exit(r)
	case nodelog.EventDeleted:
		// `shim delete` after a dead shim records the exit only here
		// (with its time); a shim's own deletion repeats a counted exit.
		if r.ExitedAt != nil && !v.exited[k] {
			v.exit(r)
		}
		v.forget(k)
		v.deleted(r)
	}
}

// exit counts r's exit and, for a container, makes it the last one.
func (v *logView) exit(r *nodelog.Record) {
	if r.ExitStatus == nil {
		return
	}
	k := r.Key()
	t := terminatedOf(r, r.OOM || v.oom[k])
	v.exited[k] = true
	o := v.ownerOf(r)
	name := containerLabel(r)
	o.exits[exitKey{container: name, kind: r.Kind, reason: t.reason, code: t.code}]++
	if r.Kind == nodelog.KindContainer {
		o.last[name] = t
	}
}

// forget drops what is kept about a deleted task (and its execs) or exec.
func (v *logView) forget(k nodelog.Key) {
	for _, m := range []map[nodelog.Key]bool{v.exited, v.oom} {
		delete(m, k)
		if k.ExecID != "" {
			continue
		}
		for ek := range m {
			if ek.Namespace == k.Namespace && ek.ContainerID == k.ContainerID {
				delete(m, ek)
			}
		}
	}
}

// deleted starts the retention of the series of a deleted pod (its sandbox
// was deleted) or of a deleted container outside a pod.
func (v *logView) deleted(r *nodelog.Record) {
	if r.Kind == nodelog.KindSandbox || (r.Kind == nodelog.KindContainer && r.PodUID == "") {
		if o, ok := v.owners[ownerKey(r)]; ok {
			o.deletedAt = r.Time
		}
	}
}

// expire drops the series of pods deleted more than retention before now.
func (v *logView) expire(now time.Time, retention time.Duration) {
	for k, o := range v.owners {
		if !o.deletedAt.IsZero() && now.Sub(o.deletedAt) > retention {
			delete(v.owners, k)
		}
	}
}

func (v *logView) ownerOf(r *nodelog.Record) *owner {
	k := ownerKey(r)
	o, ok := v.owners[k]
	if !ok {
		o = &owner{
			labels: podLabels{namespace: r.PodNamespace, pod: r.PodName, uid: r.PodUID},
			last:   map[string]terminated{}, exits: map[exitKey]uint64{},
		}
		v.owners[k] = o
	}
	return o
}

// ownerKey is the pod's uid, or the container outside a pod.
func ownerKey(r *nodelog.Record) string {
	if r.PodUID != "" {
		return "pod/" + r.PodUID
	}
	return "ctr/" + r.Namespace + "/" + r.ContainerID
}

// containerLabel is the container's name in its pod; POD for a sandbox
// without one (as cAdvisor names the pause container); the container id
// outside a pod.
func containerLabel(r *nodelog.Record) string {
	switch {
	case r.ContainerName != "":
		return r.ContainerName
	case r.Kind == nodelog.KindSandbox:
		return "POD"
	}
	return r.ContainerID
}

func terminatedOf(r *nodelog.Record, oom bool) terminated {
	t := terminated{code: *r.ExitStatus, reason: reasonOf(*r.ExitStatus, oom), at: r.Time}
	if r.ExitedAt != nil {
		t.at = *r.ExitedAt
	}
	return t
}

// reasonOf names an exit as the kubelet does.
func reasonOf(code uint32, oom bool) string {
	switch {
	case oom:
		return ReasonOOMKilled
	case code == 0:
		return ReasonCompleted
	}
	return ReasonError
}

func codeLabel(code uint32) string { return strconv.FormatUint(uint64(code), 10) }
