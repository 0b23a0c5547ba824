package shim

import (
	"sync"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// reopenEvery is how often a shim whose node log could not be opened tries
// again (each record in between is counted as failed).
const reopenEvery = 10 * time.Second

// nodeLog is the shim's writer of the node lifecycle log (nodelog.Dir()),
// opened at the first record: a log directory that cannot be created or
// written costs records, counted by the exit monitor, never an exit.
type nodeLog struct {
	mu    sync.Mutex
	w     *nodelog.Writer
	err   error
	retry time.Time
}

// Append appends rs to the log, opening it first if needed.
func (l *nodeLog) Append(rs ...*nodelog.Record) (uint64, error) {
	w, err := l.writer()
	if err != nil {
		return 0, err
	}
	return w.Append(rs...)
}

func (l *nodeLog) writer() (*nodelog.Writer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		return l.w, nil
	}
	if now := time.Now(); now.After(l.retry) {
		l.w, l.err = nodelog.Open(nodelog.Dir(), nodelog.EnvOptions())
		l.retry = now.Add(reopenEvery)
	}
	return l.w, l.err
}
