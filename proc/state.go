package proc

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// state is where a process is in its lifecycle. The lifecycle is an
// explicit table: an operation not listed for a state is refused with an
// errdefs error that says which state forbids it.
type state string

const (
	stateCreated state = "created"
	stateRunning state = "running"
	statePaused  state = "paused"
	stateStopped state = "stopped"
	stateDeleted state = "deleted"
)

type op string

const (
	opStart  op = "start"
	opKill   op = "kill"
	opDelete op = "delete"
	opPause  op = "pause"
	opResume op = "resume"
	opExec   op = "exec"
	opUpdate op = "update"
	opStats  op = "stats"
	opResize op = "resize"
	opCkpt   op = "checkpoint"
)

// legal lists, per state, the operations allowed and the state they lead
// to ("" keeps the state).
var legal = map[state]map[op]state{
	stateCreated: {opStart: stateRunning, opKill: "", opDelete: stateDeleted, opExec: "", opUpdate: "", opStats: "", opResize: ""},
	stateRunning: {opKill: "", opPause: statePaused, opExec: "", opUpdate: "", opStats: "", opResize: "", opCkpt: ""},
	statePaused:  {opKill: "", opResume: stateRunning, opUpdate: "", opStats: "", opResize: "", opCkpt: ""},
	stateStopped: {opDelete: stateDeleted},
	stateDeleted: {},
}

// check returns the state op leads to, or why it is refused.
func (s state) check(o op) (state, error) {
	next, ok := legal[s][o]
	if !ok {
		return s, refusal(s, o)
	}
	if next == "" {
		next = s
	}
	return next, nil
}

func refusal(s state, o op) error {
	switch {
	case s == stateDeleted:
		return fmt.Errorf("process deleted: %w", errdefs.ErrNotFound)
	case s == stateStopped && o == opKill:
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	default:
		return fmt.Errorf("cannot %s a %s process: %w", o, s, errdefs.ErrFailedPrecondition)
	}
}
