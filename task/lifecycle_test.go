package task

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/proc"
	taskAPI "github.com/watchshim/containerd-shim-watch-v2/task/api"
)

// containerd deletes a task whose Create it gave up on while the shim is
// still creating it: the Delete answers NotFound (as the task does not
// exist yet) and marks the Create abandoned; the service is idle, and says
// so, once that Create ends.
func TestDeleteDuringCreateAbandonsIt(t *testing.T) {
	svc, _, c := serve(t)
	var idle atomic.Int32
	svc.NotifyIdle(func() { idle.Add(1) })
	if _, ok := svc.IdleSince(); !ok {
		t.Fatal("a new service is not idle")
	}
	svc.mu.Lock()
	svc.creating["c1"] = struct{}{}
	svc.mu.Unlock()
	if _, ok := svc.IdleSince(); ok {
		t.Fatal("idle with a Create in flight")
	}

	_, err := c.Delete(ctx(t), &taskAPI.DeleteRequest{ID: "c1"})
	wantErr(t, "Delete during Create", err, notFound)
	_, err = c.Delete(ctx(t), &taskAPI.DeleteRequest{ID: "other"})
	wantErr(t, "Delete of an unknown id", err, notFound)
	svc.mu.Lock()
	_, marked := svc.abandoned["c1"]
	_, other := svc.abandoned["other"]
	svc.mu.Unlock()
	if !marked || other {
		t.Fatalf("abandoned after the Deletes: c1 %v, other %v; want only c1", marked, other)
	}

	failed := errors.New("runc create failed")
	got, err := svc.settle(context.Background(), "c1", nil, failed)
	if got != nil || !errors.Is(err, failed) {
		t.Fatalf("settle of a failed Create = %v, %v; want nil, its error", got, err)
	}
	svc.mu.Lock()
	left := len(svc.abandoned) + len(svc.creating)
	svc.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d abandoned or creating entries left after settle", left)
	}
	if _, ok := svc.IdleSince(); !ok || idle.Load() != 1 {
		t.Fatalf("after the last Create ended: idle %v, notified %d times; want idle, notified once", ok, idle.Load())
	}
}

// A Create whose caller is gone (its context ended) leaves nothing behind
// and keeps its own error when it failed anyway.
func TestSettleAfterCallerGone(t *testing.T) {
	svc, _, _ := serve(t)
	svc.mu.Lock()
	svc.creating["c1"] = struct{}{}
	svc.mu.Unlock()
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := svc.settle(cctx, "c1", nil, context.Canceled)
	if got != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("settle = %v, %v; want nil, context.Canceled", got, err)
	}
	if _, ok := svc.IdleSince(); !ok {
		t.Fatal("not idle after the only Create ended")
	}
}

// A Shutdown held by a Create in flight is forgotten once that Create
// leaves a task: it does not shut the shim down when a later Create fails.
func TestHeldShutdownForgottenWhenATaskIsLeft(t *testing.T) {
	svc, sd, c := serve(t)
	svc.mu.Lock()
	svc.creating["c1"] = struct{}{}
	svc.mu.Unlock()
	if _, err := c.Shutdown(ctx(t), &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	// The Create succeeds; later another one starts, the first task is
	// deleted meanwhile, and the second Create fails.
	if got, err := svc.settle(context.Background(), "c1", &proc.Container{ID: "c1"}, nil); got == nil || err != nil {
		t.Fatalf("settle of a successful Create = %v, %v", got, err)
	}
	svc.mu.Lock()
	svc.creating["c2"] = struct{}{}
	delete(svc.containers, "c1")
	svc.mu.Unlock()
	svc.settle(context.Background(), "c2", nil, errors.New("failed"))
	if n := sd.calls.Load(); n != 0 {
		t.Fatalf("an old Shutdown, held by a Create that succeeded, shut the shim down later (%d calls)", n)
	}
}

// Once the shim decided to exit (Shutdown with nothing served), a Create
// or an Exec that arrives while it drains is refused with Unavailable and
// nothing is reserved: it would be lost with the process.
func TestCreateWhileClosingRefused(t *testing.T) {
	svc, sd, c := serve(t)
	if _, err := c.Shutdown(ctx(t), &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	if sd.calls.Load() != 1 {
		t.Fatalf("Shutdown with no task: %d shutdowns, want 1", sd.calls.Load())
	}
	_, err := c.Create(ctx(t), &taskAPI.CreateTaskRequest{ID: "late", Bundle: t.TempDir()})
	wantErr(t, "Create while closing", err, unavailable)
	_, err = c.Exec(ctx(t), &taskAPI.ExecProcessRequest{ID: "late", ExecID: "e1"})
	wantErr(t, "Exec while closing", err, unavailable)
	svc.mu.Lock()
	reserved := len(svc.creating) + len(svc.containers)
	svc.mu.Unlock()
	if reserved != 0 {
		t.Fatalf("%d tasks reserved or created after the refusals", reserved)
	}
	if svc.ShutdownIfIdle(); sd.calls.Load() != 2 {
		t.Fatalf("ShutdownIfIdle when idle: %d shutdowns, want 2", sd.calls.Load())
	}
}

// The idle watch's shutdown and a Create racing it: either the Create is
// reserved first (and the shim stays) or it is refused; never both
// accepted and shut down.
func TestShutdownIfIdleRacesCreate(t *testing.T) {
	svc, sd, _ := serve(t)
	if err := svc.reserve("c1"); err != nil {
		t.Fatal(err)
	}
	if svc.ShutdownIfIdle() || sd.calls.Load() != 0 {
		t.Fatal("shut down with a Create in flight")
	}
}
