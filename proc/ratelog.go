package proc

import (
	"sync"
	"time"

	"github.com/containerd/log"
)

// rateLog logs a warning at most once per period, with the number of
// warnings it left out since, so that whoever can provoke one (a process
// flooding the pidfd socket) cannot flood the shim's log or slow it down
// with logging. Safe for concurrent use.
type rateLog struct {
	msg    string
	period time.Duration

	mu     sync.Mutex
	next   time.Time
	missed int
}

// droppedConns logs the connections a pidfd socket dropped.
var droppedConns = &rateLog{msg: "pidfd socket: dropped a connection", period: 10 * time.Second}

func (r *rateLog) warn(err error) {
	now := time.Now()
	r.mu.Lock()
	if now.Before(r.next) {
		r.missed++
		r.mu.Unlock()
		return
	}
	missed := r.missed
	r.missed, r.next = 0, now.Add(r.period)
	r.mu.Unlock()
	e := log.L.WithError(err)
	if missed > 0 {
		e = e.WithField("suppressed", missed)
	}
	e.Warn(r.msg)
}
