package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
)

// RuntimeName is the runtime type containerd uses for this shim.
const RuntimeName = "io.containerd.watch.v2"

// GroupAnnotation puts containers in one shim explicitly.
const GroupAnnotation = "io.containerd.watch.v2.group"

// Manager runs the binary's actions.
type Manager struct {
	Version, Revision string
}

// groupOf picks the shim a container belongs to: our group annotation,
// else its pod's sandbox id, else its own id.
func groupOf(id string, annotations map[string]string) string {
	for _, key := range []string{GroupAnnotation, proc.AnnotationSandboxID} {
		if g := annotations[key]; g != "" {
			return g
		}
	}
	return id
}

// Start finds or starts the server for the container's group and returns
// its address. It runs in the bundle directory.
func (m *Manager) Start(ctx context.Context, f flags) (string, error) {
	annotations, err := proc.BundleAnnotations(f.bundle)
	if err != nil {
		return "", err
	}
	group := groupOf(f.id, annotations)
	if err := identifiers.Validate(group); err != nil {
		return "", fmt.Errorf("shim group %q: %w", group, err)
	}
	addr := socketAddress(f.address, f.namespace, group)
	if canConnect(addr) {
		return addr, nil
	}
	if err := m.spawn(ctx, f, addr); err != nil {
		return "", err
	}
	return addr, nil
}

// spawn re-executes this binary as the server for addr and waits until it
// listens there (or found another server listening).
func (m *Manager) spawn(ctx context.Context, f flags, addr string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	report, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer report.Close()
	args := []string{"-namespace", f.namespace, "-id", f.id, "-address", f.address}
	if f.debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), socketEnv+"="+addr)
	cmd.Dir = f.bundle
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start shim server: %w", err)
	}
	applyShimCgroup(ctx, cmd.Process.Pid)
	if err := adjustOOMScore(cmd.Process.Pid); err != nil {
		// Without CAP_SYS_RESOURCE this fails; the shim still works.
		log.G(ctx).WithError(err).Warn("adjust shim oom score")
	}
	if err := awaitClaim(report); err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		return err
	}
	return cmd.Process.Release()
}

// Stop is the `delete` action: containerd runs it after the server died.
// It removes what is left of the container and reports the exit the node
// log holds for it (the shim's exit journal) when there is one; 137 only
// when the exit is unknown and it had to kill.
func (m *Manager) Stop(ctx context.Context, f flags) (exitmon.Status, error) {
	if err := identifiers.Validate(f.id); err != nil {
		return exitmon.Status{}, err
	}
	if f.debug {
		_ = log.SetLevel("debug")
	}
	bundle := f.bundle
	r := proc.RuncFor(f.namespace, bundle)
	began := time.Now()
	if err := r.Delete(ctx, f.id, &runc.DeleteOpts{Force: true}); err != nil {
		log.G(ctx).WithError(err).Warn("runc delete")
	}
	deleted := time.Now()
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	unmounted := time.Now()
	lt := lookupTask(f.namespace, f.id)
	defer func() {
		// containerd logs what `delete` writes to stderr: with -debug
		// the time of each step shows where a slow cleanup spent it.
		log.G(ctx).WithFields(log.Fields{
			"id": f.id, "runc_delete": deleted.Sub(began), "unmount": unmounted.Sub(deleted),
			"node_log": time.Since(unmounted),
		}).Debug("delete action")
	}()
	st := lt.exit
	if st == nil {
		pid, _ := proc.InitPid(bundle)
		st = &exitmon.Status{Pid: pid, Code: 128 + int(syscall.SIGKILL), ExitedAt: time.Now()}
	}
	if lt.live {
		recordDeleted(ctx, lt.who, *st)
	}
	return *st, nil
}

// loggedTask is what the node log holds of a task.
type loggedTask struct {
	who  exitmon.Identity
	exit *exitmon.Status // its init's exit, if recorded
	// live: the log lists the task as not deleted, or could not be read
	// (a second deletion record is better than none).
	live bool
}

// lookupTask reads the task id of namespace from the node log. The log
// keeps a task until its deletion is recorded, so it holds the exit of a
// task whose shim died: the exit was written as it was reaped. A task
// created again under the same id starts afresh at its creation record.
func lookupTask(namespace, id string) loggedTask {
	lt := loggedTask{who: exitmon.Identity{ID: id, Namespace: namespace}}
	if !nodelog.Enabled() {
		return lt
	}
	r, err := nodelog.OpenReader(nodelog.Dir())
	if err != nil {
		return lt // no log: nothing to delete from it
	}
	defer r.Close()
	st, _, err := r.List()
	if err != nil {
		lt.live = true
		return lt
	}
	rec, ok := st.Get(nodelog.Key{Namespace: namespace, ContainerID: id})
	if !ok {
		return lt
	}
	lt.who, lt.exit = exitmon.Logged(rec)
	lt.live = true
	return lt
}

// recordDeleted appends the task's deletion to the node log: the shim that
// would have recorded it died. Without it the log would list the task as
// alive forever. (containerd also runs `shim delete` after a shim that
// deleted its tasks has exited; the log no longer lists those.)
func recordDeleted(ctx context.Context, who exitmon.Identity, st exitmon.Status) {
	w, err := nodelog.Open(nodelog.Dir(), nodelog.EnvOptions())
	if err == nil {
		_, err = w.Append(exitmon.DeletedRecord(who, st))
		w.Close()
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("node log: record deletion")
	}
}
