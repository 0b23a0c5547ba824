//go:build e2e

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// Options select how Start sets up containerd.
type Options struct {
	// Version is the containerd version, one of DefaultVersions (default:
	// the first of Versions()).
	Version string
	// Namespace is the namespace Ctr uses (default "k8s.io", where the
	// images are imported and CRI runs).
	Namespace string
	// NoImages skips importing the test images at start.
	NoImages bool
	// WatchOptions is the body of the watch runtime's options table in
	// config.toml (TOML lines such as `SystemdCgroup = true`); no table
	// when empty.
	WatchOptions string
	// OCIRuntime is the path of the OCI runtime binary (Crun(), say) both
	// runtimes run for CRI: the BinaryName of runc's options, and of
	// watch's, ahead of WatchOptions (which must then not set
	// BinaryName). Default: runc's BinaryName is .bin/runc and watch has
	// none, so it runs runc from containerd's PATH, the same .bin/runc.
	OCIRuntime string
	// LogLevel is containerd's log level (default "debug", which tests read;
	// containerd starts its shims with -debug then). Benchmarks use "info",
	// the level nodes run at.
	LogLevel string
	// Supervise restarts containerd whenever it exits other than through
	// Stop or Restart, as systemd's Restart=always does. With PidFile,
	// which always names the running containerd, it is what the node
	// installer's signal:PIDFILE restart method expects of a host.
	Supervise bool
	// NoWatchRuntime leaves runtime watch out of config.toml and the watch
	// shim out of containerd's PATH: the node installer registers it.
	NoWatchRuntime bool
}

// Containerd is a private containerd instance owned by one test.
type Containerd struct {
	t         testing.TB
	Version   string // containerd version, one of DefaultVersions
	Dir       string // temporary directory holding all state
	Address   string // gRPC socket path
	Namespace string // default namespace of Ctr
	bins      binaries
	// watchOptions is Options.WatchOptions.
	watchOptions string
	logLevel     string // Options.LogLevel
	// ociRuntime is Options.OCIRuntime.
	ociRuntime string
	// supervise and noWatch are Options.Supervise and .NoWatchRuntime.
	supervise, noWatch bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
	cleaned bool

	// cleanOnce runs Cleanup's work once; concurrent calls wait for it.
	cleanOnce sync.Once

	// sharedFifosBefore are the entries of sharedFifoDir at start, and
	// otherAtStart tells whether another containerd ran then: see
	// sharedFifoLeftovers.
	sharedFifosBefore map[string]bool
	otherAtStart      bool
	// stopped tells that containerd was stopped during the test (Stop,
	// Restart): a ctr exec it left mid-call exits without removing its
	// fifos, so execFifoLeftovers does not count them.
	stopped bool
	// before and after are the hooks of onCleanup.
	before, after []func() []string
}

// onCleanup registers work for Cleanup, which runs it however the instance
// ends (test cleanup, interrupt): before runs first, while containerd is
// still up (to stop what uses it); after runs last, once every process
// and mount under Dir is gone (to remove what lives outside Dir). Each
// returns what it could not clean.
func (c *Containerd) onCleanup(before, after func() []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.before = append(c.before, before)
	c.after = append(c.after, after)
}

// socketName is the name of containerd's gRPC socket in the instance dir.
const socketName = "containerd.sock"

// Start starts a private containerd for t and registers its cleanup. It
// skips t when not root or when a .bin binary is missing.
func Start(t testing.TB, opts Options) *Containerd {
	t.Helper()
	c, err := newContainerd(t, opts)
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(c.cleanupForTest)
	if err := c.StartAgain(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	if !opts.NoImages {
		if err := c.ImportImages(); err != nil {
			t.Fatalf("import images: %v", err)
		}
	}
	return c
}

func newContainerd(t testing.TB, opts Options) (*Containerd, error) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: end-to-end tests need root")
	}
	if opts.Version == "" {
		opts.Version = Versions()[0]
	}
	if opts.Namespace == "" {
		opts.Namespace = "k8s.io"
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	bins := binariesFor(bin, opts.Version)
	if m := bins.missing(); len(m) > 0 {
		t.Skipf("skipping: missing %s (run make deps)", strings.Join(m, ", "))
	}
	sweepStale()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, err
	}
	c := &Containerd{
		t: t, Version: opts.Version, Dir: dir, Namespace: opts.Namespace, bins: bins,
		Address: filepath.Join(dir, socketName), watchOptions: opts.WatchOptions,
		ociRuntime: opts.OCIRuntime, logLevel: opts.LogLevel,
		supervise: opts.Supervise, noWatch: opts.NoWatchRuntime,
	}
	if c.logLevel == "" {
		c.logLevel = "debug"
	}
	c.sharedFifosBefore, c.otherAtStart = sharedFifoNames(), c.otherContainerd()
	register(c)
	if err := writeOwner(dir); err != nil {
		return c, err
	}
	return c, c.writeConfig()
}

// StartAgain starts containerd on the existing root and state (after Stop)
// and waits until its gRPC and CRI services answer.
func (c *Containerd) StartAgain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return fmt.Errorf("containerd already running")
	}
	if c.cleaned {
		return fmt.Errorf("containerd cleaned up")
	}
	logFile, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bins.containerd, "--config", c.configPath())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = c.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	c.cmd, c.logFile, c.exited = cmd, logFile, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
		if c.supervise {
			c.restartAfterExit(cmd)
		}
	}(c.exited)
	if err := writePidFile(c.PidFile(), cmd.Process.Pid); err != nil {
		return err
	}
	return c.waitReady(30 * time.Second)
}

// PathDir is the directory at the head of containerd's PATH, holding runc
// and the shims: what /usr/local/bin is on a node. containerd finds a
// shim there by its runtime type's name when it reloads a task whose
// bundle records no binary path (a container grouped into its pod's
// shim), whatever runtime_path says.
func (c *Containerd) PathDir() string { return filepath.Join(c.Dir, "bin") }

// env returns containerd's environment: PATH starts with PathDir; the
// watch shims write the node lifecycle log in c.Dir unless the test chose
// a directory ($WATCH_NODE_LOG_DIR).
func (c *Containerd) env() []string {
	env := []string{"PATH=" + c.PathDir() + ":" + os.Getenv("PATH")}
	if os.Getenv(NodeLogDirEnv) == "" {
		env = append(env, NodeLogDirEnv+"="+c.NodeLogDir())
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *Containerd) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited: %s", c.cmd.ProcessState)
		default:
		}
		_, errCtr := c.run(context.Background(), 5*time.Second, c.bins.ctr, c.ctrArgs("default", "version"))
		_, errCri := c.run(context.Background(), 5*time.Second, c.bins.crictl, c.crictlArgs("version"))
		if errCtr == nil && errCri == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not ready after %s: %v; %v", timeout, errCtr, errCri)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops containerd (SIGTERM, SIGKILL after 15 s), leaving shims and
// containers running.
func (c *Containerd) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
	c.stopped = true
	return c.logFile.Close()
}

// Restart stops and starts containerd again on the same root and state.
func (c *Containerd) Restart() error {
	if err := c.Stop(); err != nil {
		return fmt.Errorf("stop containerd: %w", err)
	}
	if err := c.StartAgain(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	return nil
}

// Running reports whether containerd is running.
func (c *Containerd) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// Pid returns containerd's pid, 0 when stopped.
func (c *Containerd) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// LogPath returns the path of containerd's log file.
func (c *Containerd) LogPath() string { return filepath.Join(c.Dir, "containerd.log") }

// LogTail returns the last n lines of containerd's log.
func (c *Containerd) LogTail(n int) string {
	data, err := os.ReadFile(c.LogPath())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > maxLogLine {
			lines[i] = l[:maxLogLine] + " ..."
		}
	}
	return strings.Join(lines, "\n")
}

// maxLogLine caps the log lines LogTail returns (specs are logged whole).
const maxLogLine = 400

// NodeLogDirEnv names the node lifecycle log's directory for the watch
// shims (nodelog.DirEnv).
const NodeLogDirEnv = nodelog.DirEnv

// NodeLogDir is where the watch shims of c write the node lifecycle log,
// unless $WATCH_NODE_LOG_DIR says otherwise.
func (c *Containerd) NodeLogDir() string {
	if d := os.Getenv(NodeLogDirEnv); d != "" {
		return d
	}
	return filepath.Join(c.Dir, "nodelog")
}
