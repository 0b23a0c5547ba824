package task

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
	taskAPI "github.com/watchshim/containerd-shim-watch-v2/task/api"
)

// fakeShutdown counts Shutdown calls.
type fakeShutdown struct{ calls atomic.Int32 }

func (f *fakeShutdown) Shutdown()                                    { f.calls.Add(1) }
func (f *fakeShutdown) RegisterCallback(func(context.Context) error) {}
func (f *fakeShutdown) Done() <-chan struct{}                        { return make(chan struct{}) }
func (f *fakeShutdown) Err() error                                   { return nil }

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, any) error { return nil }

// serve starts the service on a real ttrpc server on a unix socket and
// returns a client for it.
func serve(t *testing.T) (*Service, *fakeShutdown, taskAPI.TTRPCTaskService) {
	t.Helper()
	svc, sd, client := serveRaw(t)
	return svc, sd, taskAPI.NewTTRPCTaskClient(client)
}

// serveRaw is serve with the bare ttrpc client.
func serveRaw(t *testing.T) (*Service, *fakeShutdown, *ttrpc.Client) {
	t.Helper()
	sd := &fakeShutdown{}
	svc := New(exitmon.New(nopPublisher{}), "testns", sd)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RegisterTTRPC(srv); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		client.Close()
		srv.Close()
	})
	return svc, sd, client
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// addFake registers a container the service can find but that has no
// runc behind it: enough for the checks made before proc is called.
func addFake(s *Service, id string) {
	s.mu.Lock()
	s.containers[id] = &proc.Container{ID: id}
	s.mu.Unlock()
}

type errCheck struct {
	name string
	is   func(error) bool
}

var (
	notFound     = errCheck{"NotFound", errdefs.IsNotFound}
	invalid      = errCheck{"InvalidArgument", errdefs.IsInvalidArgument}
	exists       = errCheck{"AlreadyExists", errdefs.IsAlreadyExists}
	notImpl      = errCheck{"NotImplemented", errdefs.IsNotImplemented}
	precondition = errCheck{"FailedPrecondition", errdefs.IsFailedPrecondition}
	unavailable  = errCheck{"Unavailable", errdefs.IsUnavailable}
)

// wantErr checks the error the client got, converted back from its ttrpc
// status as containerd does.
func wantErr(t *testing.T, what string, err error, want errCheck) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s", what, want.name)
	}
	if native := errgrpc.ToNative(err); !want.is(native) {
		t.Fatalf("%s: error %v (%T), want %s", what, err, native, want.name)
	}
}

func TestUnknownIDIsNotFound(t *testing.T) {
	_, _, c := serve(t)
	x := ctx(t)
	const id = "nosuch"
	calls := map[string]func() error{
		"State":      func() error { _, err := c.State(x, &taskAPI.StateRequest{ID: id}); return err },
		"Start":      func() error { _, err := c.Start(x, &taskAPI.StartRequest{ID: id}); return err },
		"Delete":     func() error { _, err := c.Delete(x, &taskAPI.DeleteRequest{ID: id}); return err },
		"Wait":       func() error { _, err := c.Wait(x, &taskAPI.WaitRequest{ID: id}); return err },
		"Kill":       func() error { _, err := c.Kill(x, &taskAPI.KillRequest{ID: id, Signal: 9}); return err },
		"Pids":       func() error { _, err := c.Pids(x, &taskAPI.PidsRequest{ID: id}); return err },
		"Pause":      func() error { _, err := c.Pause(x, &taskAPI.PauseRequest{ID: id}); return err },
		"Resume":     func() error { _, err := c.Resume(x, &taskAPI.ResumeRequest{ID: id}); return err },
		"Connect":    func() error { _, err := c.Connect(x, &taskAPI.ConnectRequest{ID: id}); return err },
		"Stats":      func() error { _, err := c.Stats(x, &taskAPI.StatsRequest{ID: id}); return err },
		"CloseIO":    func() error { _, err := c.CloseIO(x, &taskAPI.CloseIORequest{ID: id, Stdin: true}); return err },
		"ResizePty":  func() error { _, err := c.ResizePty(x, &taskAPI.ResizePtyRequest{ID: id}); return err },
		"Update":     func() error { _, err := c.Update(x, &taskAPI.UpdateTaskRequest{ID: id}); return err },
		"Checkpoint": func() error { _, err := c.Checkpoint(x, &taskAPI.CheckpointTaskRequest{ID: id}); return err },
		"Exec": func() error {
			_, err := c.Exec(x, &taskAPI.ExecProcessRequest{ID: id, ExecID: "e1", Spec: &anypb.Any{Value: []byte("{}")}})
			return err
		},
		"State exec": func() error { _, err := c.State(x, &taskAPI.StateRequest{ID: id, ExecID: "e1"}); return err },
	}
	for name, call := range calls {
		wantErr(t, name, call(), notFound)
	}
}

func TestBadIDIsInvalidArgument(t *testing.T) {
	svc, _, c := serve(t)
	x := ctx(t)
	addFake(svc, "c1")
	bundle := t.TempDir()
	for _, id := range []string{"../x", "a/b", "", "..", "/abs", "a\x00b"} {
		_, err := c.State(x, &taskAPI.StateRequest{ID: id})
		wantErr(t, "State "+id, err, invalid)
		_, err = c.Create(x, &taskAPI.CreateTaskRequest{ID: id, Bundle: bundle})
		wantErr(t, "Create "+id, err, invalid)
		_, err = c.Kill(x, &taskAPI.KillRequest{ID: id, Signal: 9})
		wantErr(t, "Kill "+id, err, invalid)
		if id == "" {
			continue // an empty exec id names the init
		}
		_, err = c.State(x, &taskAPI.StateRequest{ID: "c1", ExecID: id})
		wantErr(t, "State exec "+id, err, invalid)
		_, err = c.Exec(x, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: id, Spec: &anypb.Any{Value: []byte("{}")}})
		wantErr(t, "Exec "+id, err, invalid)
	}
	_, err := c.Exec(x, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "", Spec: &anypb.Any{Value: []byte("{}")}})
	wantErr(t, "Exec without exec id", err, invalid)
}

// A signal number that is no signal and a terminal size that does not fit
// 16 bits are refused before any process is looked at.
func TestBadSignalAndSize(t *testing.T) {
	svc, _, c := serve(t)
	x := ctx(t)
	addFake(svc, "c1")
	for _, sig := range []uint32{65, 1000, 1 << 31} {
		_, err := c.Kill(x, &taskAPI.KillRequest{ID: "c1", Signal: sig})
		wantErr(t, fmt.Sprintf("Kill signal %d", sig), err, invalid)
	}
	for _, wh := range [][2]uint32{{65536, 24}, {80, 65536}, {1 << 31, 1 << 31}} {
		_, err := c.ResizePty(x, &taskAPI.ResizePtyRequest{ID: "c1", Width: wh[0], Height: wh[1]})
		wantErr(t, fmt.Sprintf("ResizePty %dx%d", wh[0], wh[1]), err, invalid)
	}
}

func TestCreateBadBundle(t *testing.T) {
	svc, sd, c := serve(t)
	x := ctx(t)
	dir := t.TempDir()
	for _, b := range []string{"rel/bundle", "", dir + "/../" + filepath.Base(dir), dir + "/", dir + "/./x"} {
		_, err := c.Create(x, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: b})
		wantErr(t, "Create bundle "+b, err, invalid)
	}

	// A clean bundle without config.json: refused, nothing registered.
	_, err := c.Create(x, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir})
	wantErr(t, "Create without config.json", err, invalid)
	// A config.json that is not a spec, or has no process.
	for _, body := range []string{"not json", `{"ociVersion":"1.0.0"}`} {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := c.Create(x, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir})
		wantErr(t, "Create with config.json "+body, err, invalid)
	}
	_, err = c.State(x, &taskAPI.StateRequest{ID: "c1"})
	wantErr(t, "State after failed Create", err, notFound)
	svc.mu.Lock()
	n, m := len(svc.containers), len(svc.creating)
	svc.mu.Unlock()
	if n != 0 || m != 0 {
		t.Fatalf("failed Creates left %d containers, %d reservations", n, m)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		t.Fatalf("failed Creates left files in the bundle: %v, %v", ents, err)
	}
	if _, err := c.Shutdown(x, &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	if sd.calls.Load() != 1 {
		t.Fatal("failed Creates keep the shim alive")
	}
}

func TestCreateRefusals(t *testing.T) {
	svc, _, c := serve(t)
	x := ctx(t)
	dir := t.TempDir()
	_, err := c.Create(x, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir, Checkpoint: "/ckpt"})
	wantErr(t, "Create from checkpoint", err, notImpl)
	_, err = c.Create(x, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir, Options: &anypb.Any{TypeUrl: "nope/unknown", Value: []byte{1}}})
	wantErr(t, "Create with unknown options", err, invalid)
	addFake(svc, "dup")
	_, err = c.Create(x, &taskAPI.CreateTaskRequest{ID: "dup", Bundle: dir})
	wantErr(t, "Create of an existing id", err, exists)
}

func TestExecBadSpec(t *testing.T) {
	svc, _, c := serve(t)
	x := ctx(t)
	addFake(svc, "c1")
	for name, spec := range map[string]*anypb.Any{
		"nil spec":   nil,
		"empty spec": {},
		"bad json":   {Value: []byte("{nope")},
	} {
		_, err := c.Exec(x, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec})
		wantErr(t, "Exec with "+name, err, invalid)
	}
	_, err := c.Update(x, &taskAPI.UpdateTaskRequest{ID: "c1"})
	wantErr(t, "Update without resources", err, invalid)
}

func TestShutdown(t *testing.T) {
	svc, sd, c := serve(t)
	x := ctx(t)
	addFake(svc, "c1")
	if _, err := c.Shutdown(x, &taskAPI.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if n := sd.calls.Load(); n != 0 {
		t.Fatalf("Shutdown with a task left shut the shim down (%d calls)", n)
	}
	// A Create in progress also keeps the shim.
	svc.mu.Lock()
	delete(svc.containers, "c1")
	svc.creating["c2"] = struct{}{}
	svc.mu.Unlock()
	if _, err := c.Shutdown(x, &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := sd.calls.Load(); n != 0 {
		t.Fatalf("Shutdown during a Create shut the shim down (%d calls)", n)
	}
	// The Create fails: the Shutdown it held is honoured.
	svc.settle(context.Background(), "c2", nil, nil)
	if n := sd.calls.Load(); n != 1 {
		t.Fatalf("a held Shutdown after the Create failed: %d shutdown calls, want 1", n)
	}
	if _, err := c.Shutdown(x, &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := sd.calls.Load(); n != 2 {
		t.Fatalf("Shutdown with no task: %d shutdown calls, want 2", n)
	}
}

// TestToTTRPC: each errdefs class survives the trip to a ttrpc status and
// back; nil stays nil.
func TestToTTRPC(t *testing.T) {
	if toTTRPC(nil) != nil {
		t.Fatal("toTTRPC(nil) != nil")
	}
	for _, tc := range []struct {
		err  error
		want errCheck
	}{
		{errdefs.ErrNotFound, notFound},
		{errdefs.ErrInvalidArgument, invalid},
		{errdefs.ErrAlreadyExists, exists},
		{errdefs.ErrNotImplemented, notImpl},
		{errdefs.ErrFailedPrecondition, precondition},
	} {
		wrapped := errors.Join(errors.New("context"), tc.err)
		wantErr(t, tc.want.name, toTTRPC(wrapped), tc.want)
	}
}

// TestCountersMemoryClasses: the counters carry the Go runtime's split of
// its mapped memory, and the parts add up to what it says it has mapped.
func TestCountersMemoryClasses(t *testing.T) {
	s, _, _ := serve(t)
	c := s.counters()
	for _, k := range []string{"heap/objects", "heap/released", "os-stacks", "metadata/other", "metadata/mspan/inuse"} {
		if _, ok := c.MemoryClasses[k]; !ok {
			t.Fatalf("memory class %q missing: %v", k, c.MemoryClasses)
		}
	}
	var sum uint64
	for _, v := range c.MemoryClasses {
		sum += v
	}
	// Sys and the classes are read a moment apart; allow some drift.
	if sum == 0 || sum > c.GoSys+1<<20 || sum+1<<20 < c.GoSys {
		t.Fatalf("memory classes sum to %d, runtime has %d mapped: %v", sum, c.GoSys, c.MemoryClasses)
	}
}

// TestStacks: the monitor endpoint returns every goroutine's stack, the
// serving ones included.
func TestStacks(t *testing.T) {
	_, _, client := serveRaw(t)
	b, err := ReadStacks(ctx(t), client)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"goroutine ", "task.allStacks", "ttrpc.(*Server).Serve"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("stacks lack %q:\n%s", want, b)
		}
	}
}
