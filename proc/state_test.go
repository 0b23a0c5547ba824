package proc

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

var allOps = []op{opStart, opKill, opDelete, opPause, opResume, opExec, opUpdate, opStats, opResize, opCkpt}

func TestStateTransitions(t *testing.T) {
	for _, tc := range []struct {
		from state
		o    op
		to   state
	}{
		{stateCreated, opStart, stateRunning},
		{stateCreated, opKill, stateCreated},
		{stateCreated, opDelete, stateDeleted},
		{stateCreated, opExec, stateCreated},
		{stateRunning, opPause, statePaused},
		{stateRunning, opKill, stateRunning},
		{stateRunning, opExec, stateRunning},
		{stateRunning, opCkpt, stateRunning},
		{statePaused, opResume, stateRunning},
		{statePaused, opKill, statePaused},
		{stateStopped, opDelete, stateDeleted},
	} {
		got, err := tc.from.check(tc.o)
		if err != nil || got != tc.to {
			t.Errorf("%s on %s = %s, %v; want %s", tc.o, tc.from, got, err, tc.to)
		}
	}
}

func TestStateRefusals(t *testing.T) {
	for _, tc := range []struct {
		from state
		o    op
		is   func(error) bool
	}{
		{stateStopped, opKill, errdefs.IsNotFound},
		{stateStopped, opExec, errdefs.IsFailedPrecondition},
		{stateStopped, opStart, errdefs.IsFailedPrecondition},
		{stateStopped, opPause, errdefs.IsFailedPrecondition},
		{stateRunning, opStart, errdefs.IsFailedPrecondition},
		{stateRunning, opDelete, errdefs.IsFailedPrecondition},
		{stateRunning, opResume, errdefs.IsFailedPrecondition},
		{statePaused, opPause, errdefs.IsFailedPrecondition},
		{statePaused, opExec, errdefs.IsFailedPrecondition},
		{statePaused, opDelete, errdefs.IsFailedPrecondition},
		{stateCreated, opPause, errdefs.IsFailedPrecondition},
		{stateCreated, opCkpt, errdefs.IsFailedPrecondition},
	} {
		got, err := tc.from.check(tc.o)
		if !tc.is(err) {
			t.Errorf("%s on %s: error %v of the wrong class", tc.o, tc.from, err)
		}
		if got != tc.from {
			t.Errorf("refused %s on %s moved to %s", tc.o, tc.from, got)
		}
	}
	// Anything on a deleted process is NotFound.
	for _, o := range allOps {
		if _, err := stateDeleted.check(o); !errdefs.IsNotFound(err) {
			t.Errorf("%s on deleted = %v, want NotFound", o, err)
		}
	}
	// A stopped process allows nothing but delete.
	for _, o := range allOps {
		if _, err := stateStopped.check(o); (err == nil) != (o == opDelete) {
			t.Errorf("%s on stopped = %v", o, err)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"1.2.0", true},
		{"1.1.15", false},
		{"v1.5.2", true},
		{"1.10.0", true},
		{"2.0.0", true},
		{"0.9.9", false},
		{"1.2.0-rc.1", true},
		{"1.2", true},
		{"1", false},
		{"", false},
		{"garbage", false},
		{"vv1.2.0", false},
	} {
		if got := versionAtLeast(tc.v, 1, 2); got != tc.want {
			t.Errorf("versionAtLeast(%q, 1, 2) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// A kill the OCI runtime refuses because the process just exited (not yet
// reaped) is NotFound, as for a reaped one; other failures are not.
func TestGoneError(t *testing.T) {
	for msg, want := range map[string]bool{
		"runc: container not running: exit status 1":          true,
		"runc: open pidfd: No such process: exit status 1":    true,
		"os: process already finished":                        true,
		"runc: permission denied: exit status 1":              false,
		"runc: container \"x\" does not exist: exit status 1": false,
	} {
		if got := goneError(errors.New(msg)); got != want {
			t.Errorf("goneError(%q) = %v, want %v", msg, got, want)
		}
	}
}
