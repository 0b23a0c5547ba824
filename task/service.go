package task

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	apitypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
	taskAPI "github.com/watchshim/containerd-shim-watch-v2/task/api"
)

// Version is reported by Connect.
var Version = "dev"

// Service implements the task v3 TaskService for every container of a pod.
// It is safe for concurrent use; a slow runc call for one task never holds
// a lock other tasks need.
type Service struct {
	mon       *exitmon.Monitor
	namespace string
	sd        Shutdowner

	mu         sync.Mutex
	containers map[string]*proc.Container
	creating   map[string]struct{}
	// abandoned holds ids of Creates in flight whose task containerd
	// has already deleted: it gave up on them.
	abandoned map[string]struct{}
	// shutdownAsked: containerd's Shutdown came when only Creates in
	// flight kept the shim; it is honoured if they leave no task.
	shutdownAsked bool
	// closing: the shim decided to exit (nothing served, nothing being
	// created); every Create or Exec from then on is refused, never
	// accepted and lost with the process.
	closing   bool
	idleSince time.Time
	onIdle    func()
}

// Shutdowner is told when the shim serves no task any more.
type Shutdowner interface{ Shutdown() }

// New returns the service. sd is shut down once no task is left.
func New(mon *exitmon.Monitor, namespace string, sd Shutdowner) *Service {
	return &Service{
		mon: mon, namespace: namespace, sd: sd,
		containers: map[string]*proc.Container{},
		creating:   map[string]struct{}{},
		abandoned:  map[string]struct{}{},
		idleSince:  time.Now(),
		onIdle:     func() {},
	}
}

// RegisterTTRPC registers the service on server.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	s.registerInspect(server)
	return nil
}

func (s *Service) get(id string) (*proc.Container, error) {
	if err := validateID("container", id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *Service) process(id, execID string) (*proc.Container, *proc.Process, error) {
	if err := validateExecID(execID); err != nil {
		return nil, nil, err
	}
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.Process(execID)
	return c, p, err
}

// reserve claims id for a Create in progress.
func (s *Service) reserve(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errClosing
	}
	if _, ok := s.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	if _, ok := s.creating[id]; ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	s.creating[id] = struct{}{}
	return nil
}

// settle ends the Create of id. A container containerd gave up on while
// it was being created (its request was cancelled, or containerd deleted
// the task meanwhile) is removed again and the Create fails: containerd
// does not know it, so nobody would ever delete it.
func (s *Service) settle(ctx context.Context, id string, c *proc.Container, err error) (*proc.Container, error) {
	s.mu.Lock()
	delete(s.creating, id)
	_, gaveUp := s.abandoned[id]
	delete(s.abandoned, id)
	if c != nil && !gaveUp && ctx.Err() == nil {
		s.containers[id] = c
		s.shutdownAsked = false
		s.mu.Unlock()
		return c, err
	}
	s.mu.Unlock()
	if c != nil {
		s.discard(ctx, c)
		err = fmt.Errorf("container %q: create abandoned by containerd: %w", id, errdefs.ErrAborted)
	}
	s.checkIdle()
	return nil, err
}

// discard removes a container nobody asked for any more, as containerd's
// Delete would have: its init is killed, runc's state and the rootfs are
// removed and the task's TaskExit and TaskDelete follow its TaskCreate.
func (s *Service) discard(ctx context.Context, c *proc.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardTimeout)
	defer cancel()
	if _, err := c.Delete(ctx, ""); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.ID).Warn("discard abandoned container")
	}
}

// discardTimeout bounds removing a container containerd gave up on.
const discardTimeout = 10 * time.Second

// abandon records that containerd deleted id while its Create is in
// flight: the Create's container is discarded when it is done.
func (s *Service) abandon(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.creating[id]; ok {
		s.abandoned[id] = struct{}{}
	}
}

// errClosing refuses work that arrives once the shim is shutting down.
var errClosing = fmt.Errorf("shim is shutting down: %w", errdefs.ErrUnavailable)

// closeIfIdleLocked decides, under s.mu, that the shim exits if it serves
// no task and no Create is in flight; from then on Create and Exec are
// refused. It reports whether it closed the service.
func (s *Service) closeIfIdleLocked() bool {
	if len(s.containers) > 0 || len(s.creating) > 0 {
		return false
	}
	s.closing = true
	return true
}

// ShutdownIfIdle shuts the shim down if it serves no task and has no
// Create in flight, atomically with refusing any later Create; it reports
// whether it did. The idle watch calls it.
func (s *Service) ShutdownIfIdle() bool {
	s.mu.Lock()
	closed := s.closeIfIdleLocked()
	s.mu.Unlock()
	if closed {
		s.sd.Shutdown()
	}
	return closed
}

// checkIdle notes the moment the service is left with no task and no
// Create in flight, and tells onIdle; it shuts down at once if containerd
// asked for that while the Creates were running.
func (s *Service) checkIdle() {
	s.mu.Lock()
	idle := len(s.containers) == 0 && len(s.creating) == 0
	asked := idle && s.shutdownAsked && s.closeIfIdleLocked()
	if idle {
		s.idleSince = time.Now()
	}
	s.mu.Unlock()
	if asked {
		log.L.Info("no task left after the Creates that held a Shutdown: shutting down")
		s.sd.Shutdown()
	}
	if idle {
		s.onIdle()
	}
}

// NotifyIdle makes the service call f each time it is left with no task
// and no Create in flight. Call it before serving.
func (s *Service) NotifyIdle(f func()) { s.onIdle = f }

// IdleSince reports whether the service serves no task and has no Create
// in flight, and since when.
func (s *Service) IdleSince() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idleSince, len(s.containers) == 0 && len(s.creating) == 0
}

// Create creates a container with runc and returns its init pid.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	c, err := s.create(ctx, r)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return &taskAPI.CreateTaskResponse{Pid: uint32(c.Init().State().Pid)}, nil
}

func (s *Service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (c *proc.Container, err error) {
	if err := validateID("container", r.ID); err != nil {
		return nil, err
	}
	if err := validateBundle(r.Bundle); err != nil {
		return nil, err
	}
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("restore from checkpoint: %w", errdefs.ErrNotImplemented)
	}
	opts, err := proc.RuntimeOptions(r.Options)
	if err != nil {
		return nil, err
	}
	if err := s.reserve(r.ID); err != nil {
		return nil, err
	}
	defer func() { c, err = s.settle(ctx, r.ID, c, err) }()
	return proc.Create(ctx, s.mon, proc.CreateConfig{
		ID: r.ID, Namespace: s.namespace, Bundle: r.Bundle,
		Rootfs:  mount.FromProto(r.Rootfs),
		Stdio:   proc.Stdio{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Options: opts,
	})
}

// Start starts the init or an exec.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	if err := validateExecID(r.ExecID); err != nil {
		return nil, toTTRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	pid, err := c.Start(ctx, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return &taskAPI.StartResponse{Pid: uint32(pid)}, nil
}

// Delete deletes a stopped init (the whole task) or an exec.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, _, err := s.process(r.ID, r.ExecID)
	if err != nil {
		if r.ExecID == "" && errdefs.IsNotFound(err) {
			s.abandon(r.ID)
		}
		return nil, toTTRPC(err)
	}
	st, err := c.Delete(ctx, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	if r.ExecID == "" {
		s.mu.Lock()
		delete(s.containers, r.ID)
		s.mu.Unlock()
		s.checkIdle()
	}
	return &taskAPI.DeleteResponse{
		Pid: uint32(st.Pid), ExitStatus: uint32(st.Code), ExitedAt: timestamppb.New(st.ExitedAt),
	}, nil
}

// Exec adds an exec process; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptyResponse, error) {
	if err := validateID("exec", r.ExecID); err != nil {
		return nil, toTTRPC(err)
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return nil, toTTRPC(errClosing)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	spec, err := processSpec(r.Spec)
	if err != nil {
		return nil, toTTRPC(err)
	}
	stdio := proc.Stdio{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	return empty, toTTRPC(c.Exec(ctx, r.ExecID, stdio, spec))
}

// State reports a process's state and, once stopped, its exit.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	st := p.State()
	return &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.Bundle, Pid: uint32(st.Pid),
		Status: statusOf(st.Status), Stdin: st.Stdio.Stdin, Stdout: st.Stdio.Stdout, Stderr: st.Stdio.Stderr,
		Terminal: st.Stdio.Terminal, ExitStatus: uint32(st.ExitCode), ExitedAt: timestamppb.New(st.ExitedAt),
	}, nil
}

// Wait blocks until the process exits and returns its status.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return &taskAPI.WaitResponse{ExitStatus: uint32(st.Code), ExitedAt: timestamppb.New(st.ExitedAt)}, nil
}

// Kill signals a process (with All, every process of the container).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptyResponse, error) {
	if err := validateSignal(r.Signal); err != nil {
		return nil, toTTRPC(err)
	}
	c, _, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return empty, toTTRPC(c.Kill(ctx, r.ExecID, r.Signal, r.All))
}

// Pids lists the container's processes.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	pids, err := c.Pids(ctx)
	if err != nil {
		return nil, toTTRPC(err)
	}
	resp := &taskAPI.PidsResponse{}
	for _, p := range pids {
		info := &apitypes.ProcessInfo{Pid: uint32(p.Pid)}
		if p.ExecID != "" {
			a, err := typeurl.MarshalAny(&options.ProcessDetails{ExecID: p.ExecID})
			if err != nil {
				return nil, toTTRPC(err)
			}
			info.Info = typeurl.MarshalProto(a)
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// Pause freezes the container.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptyResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return empty, toTTRPC(c.Pause(ctx))
}

// Resume thaws the container.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptyResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return empty, toTTRPC(c.Resume(ctx))
}

// Checkpoint dumps the container with criu.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptyResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	var o *options.CheckpointOptions
	if r.Options != nil && len(r.Options.GetValue()) > 0 {
		v, err := typeurl.UnmarshalAny(r.Options)
		if err != nil {
			return nil, toTTRPC(fmt.Errorf("checkpoint options: %v: %w", err, errdefs.ErrInvalidArgument))
		}
		o, _ = v.(*options.CheckpointOptions)
	}
	return empty, toTTRPC(c.Checkpoint(ctx, r.Path, o))
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptyResponse, error) {
	if err := validateWinSize(r.Width, r.Height); err != nil {
		return nil, toTTRPC(err)
	}
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return empty, toTTRPC(p.ResizePty(r.Width, r.Height))
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptyResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	if r.Stdin {
		p.CloseIO()
	}
	return empty, nil
}

// Update changes the container's resources.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptyResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	if r.Resources == nil {
		return nil, toTTRPC(fmt.Errorf("update without resources: %w", errdefs.ErrInvalidArgument))
	}
	return empty, toTTRPC(c.Update(ctx, r.Resources.GetValue()))
}

// Stats returns the container's cgroup metrics.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	a, err := c.Stats(ctx)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

// Connect returns the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toTTRPC(err)
	}
	return &taskAPI.ConnectResponse{
		ShimPid: uint32(os.Getpid()), TaskPid: uint32(c.Init().State().Pid), Version: Version,
	}, nil
}

// Shutdown stops the shim once it serves no task.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptyResponse, error) {
	s.mu.Lock()
	if len(s.containers) == 0 && len(s.creating) > 0 {
		s.shutdownAsked = true
	}
	closed := s.closeIfIdleLocked()
	s.mu.Unlock()
	if !closed {
		return empty, nil
	}
	log.G(ctx).Info("no task left: shutting down")
	s.sd.Shutdown()
	return empty, nil
}
