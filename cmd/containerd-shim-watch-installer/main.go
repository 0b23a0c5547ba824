// Command containerd-shim-watch-installer installs containerd-shim-watch-v2
// on a node and registers runtime "watch" with containerd; the deploy/
// DaemonSet runs it with `run`. It is a binary of its own so that the
// shim does not link TOML, D-Bus or HTTP client code.
//
//	install     install the shim and register the runtime (no label)
//	uninstall   remove the node label (in a pod), then the runtime and the
//	            shim once no task uses them (--force: the runtime at once)
//	run         install, label the node, then wait for SIGTERM, putting
//	            the label back every --label-interval while the
//	            installation is intact (installer.KeepLabel); uninstall
//	            on exit only with --uninstall-on-exit; serve the node's
//	            metrics meanwhile with --metrics-address
//	metrics     serve the node's Prometheus metrics (127.0.0.1:9464 by
//	            default) until SIGTERM, without installing anything
//
// Every flag has an environment variable (shown in -h) so that a
// DaemonSet configures `run` and a `kubectl exec ... uninstall` alike.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/installer"
	"github.com/watchshim/containerd-shim-watch-v2/nodemetrics"
)

// stepTimeout bounds one install or uninstall, containerd's restart
// included.
const stepTimeout = 5 * time.Minute

// version and revision are set by the Makefile's -ldflags.
var version, revision = "dev", "unknown"

type config struct {
	opts            installer.Options
	restart, socket string
	nodeName        string
	uninstallOnExit bool
	force           bool
	labelInterval   time.Duration // 0: the label is set once
	metrics         metricsConfig
}

// minLabelInterval keeps the label check from becoming a busy loop
// against the API server.
const minLabelInterval = time.Second

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	// Run through a containerd restart even when stdout is a `kubectl
	// exec` stream that the restart cuts: a write then fails, not the
	// process.
	signal.Ignore(syscall.SIGPIPE)
	fmt.Printf("containerd-shim-watch-installer %s (%s) %s\n", version, revision, cmd)
	cfg, err := parseFlags(cmd, os.Args[2:])
	if err == nil {
		err = dispatch(cmd, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd-shim-watch-installer %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: containerd-shim-watch-installer install|uninstall|run|metrics [flags] (-h for flags)")
	os.Exit(2)
}

func dispatch(cmd string, cfg *config) error {
	switch cmd {
	case "install":
		return install(cfg)
	case "uninstall":
		return uninstall(cfg)
	case "run":
		return run(cfg)
	case "metrics":
		return serveMetrics(cfg)
	}
	usage()
	return nil
}

func parseFlags(cmd string, args []string) (*config, error) {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	c := &config{}
	o := &c.opts
	str := func(p *string, name, env, def, help string) {
		fs.StringVar(p, name, envOr(env, def), help+" ($"+env+")")
	}
	str(&o.HostRoot, "host-root", "WATCH_HOST_ROOT", "", "where the host's filesystem is mounted")
	str(&o.Shim, "shim", "WATCH_SHIM", defaultShim(), "shim binary to install")
	str(&o.InstallDir, "install-dir", "WATCH_INSTALL_DIR", installer.DefaultInstallDir, "host directory to install the shim into")
	str(&o.Config, "config", "WATCH_CONTAINERD_CONFIG", installer.DefaultConfig, "containerd's main config (host path)")
	str(&o.ConfDir, "conf-dir", "WATCH_CONTAINERD_CONF_DIR", installer.DefaultConfDir, "directory of the drop-in (host path)")
	str(&o.StateDir, "state-dir", "WATCH_CONTAINERD_STATE", installer.DefaultStateDir, "containerd's state directory (host path)")
	str(&c.socket, "socket", "WATCH_CONTAINERD_SOCKET", "/run/containerd/containerd.sock", "containerd's socket (host path)")
	str(&c.restart, "restart", "WATCH_RESTART", "systemd", "how to restart containerd: systemd[:UNIT], signal:PIDFILE or none")
	str(&c.nodeName, "node-name", "NODE_NAME", "", "node to label (in a pod: from the downward API); empty: no label")
	def, err := boolEnv("WATCH_UNINSTALL_ON_EXIT")
	if err != nil {
		return nil, err
	}
	fs.BoolVar(&c.uninstallOnExit, "uninstall-on-exit", def, "run: uninstall when stopped ($WATCH_UNINSTALL_ON_EXIT)")
	force, err := boolEnv("WATCH_UNINSTALL_FORCE")
	if err != nil {
		return nil, err
	}
	fs.BoolVar(&c.force, "force", force, "uninstall: remove runtime watch from containerd even while watch tasks run; their pods lose exec and container restarts ($WATCH_UNINSTALL_FORCE)")
	interval, err := durationEnv("WATCH_LABEL_INTERVAL", installer.DefaultLabelInterval)
	if err != nil {
		return nil, err
	}
	fs.DurationVar(&c.labelInterval, "label-interval", interval, "run: how often to check that the node label is there while the installation is intact, and put it back (0: never; $WATCH_LABEL_INTERVAL)")
	metricsFlags(fs, cmd, &c.metrics)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.labelInterval != 0 && c.labelInterval < minLabelInterval {
		return nil, fmt.Errorf("label interval %s: want 0 (off) or at least %s", c.labelInterval, minLabelInterval)
	}
	if c.metrics.address != "" {
		if err := nodemetrics.CheckAddress(c.metrics.address); err != nil {
			return nil, err
		}
	}
	r, err := installer.ParseRestart(c.restart, o.HostRoot, c.socket)
	if err != nil {
		return nil, err
	}
	o.Restart, o.Log = r, os.Stdout
	return c, nil
}

// boolEnv reads a boolean environment variable (unset or empty: false);
// a value that is not a boolean is an error, not false.
func boolEnv(key string) (bool, error) {
	v := os.Getenv(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("$%s=%q: not a boolean (true or false)", key, v)
	}
	return b, nil
}

// durationEnv reads a duration environment variable (unset or empty:
// def); a value that is not a duration is an error, not def.
func durationEnv(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("$%s=%q: not a duration (e.g. 60s)", key, v)
	}
	return d, nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// defaultShim is the shim next to the installer's own binary (the image
// holds both).
func defaultShim() string {
	exe, err := os.Executable()
	if err != nil {
		return installer.ShimName
	}
	return filepath.Join(filepath.Dir(exe), installer.ShimName)
}

func install(cfg *config) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	r, err := installer.Install(ctx, cfg.opts)
	if err != nil {
		return err
	}
	if !r.Binary && !r.DropIn && !r.Config && !r.Restarted {
		fmt.Println("already installed: nothing changed")
	}
	return nil
}

// uninstall records the request first, so that the label keeper of a
// running installer pod leaves the label off, then removes the label and
// the installation.
func uninstall(cfg *config) error {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := installer.RequestUninstall(cfg.opts); err != nil {
		return err
	}
	if err := label(ctx, cfg, false); err != nil {
		return err
	}
	_, err := installer.Uninstall(ctx, cfg.opts, cfg.force)
	return err
}

// run installs, labels the node and waits for SIGTERM or SIGINT, keeping
// the label and serving the node's metrics meanwhile.
func run(cfg *config) error {
	ctx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	metricsDone, err := startMetrics(ctx, cfg)
	if err != nil {
		return err
	}
	if err := install(cfg); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	err = label(lctx, cfg, true)
	cancel()
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	labelDone := startLabelKeeper(ctx, cfg)
	fmt.Println("installed; waiting for SIGTERM")
	var s os.Signal
	select {
	case s = <-sig:
	case err := <-metricsDone:
		if err != nil {
			return err
		}
		s = <-sig
	}
	stopMetrics()
	<-labelDone
	if !cfg.uninstallOnExit {
		fmt.Printf("%s: exiting, the shim stays installed (uninstall is explicit: --uninstall-on-exit or `uninstall`)\n", s)
		return nil
	}
	fmt.Printf("%s: uninstalling\n", s)
	return uninstall(cfg)
}

// startLabelKeeper runs installer.KeepLabel until ctx ends, when a node
// is named and an interval set; the channel closes when it stopped.
func startLabelKeeper(ctx context.Context, cfg *config) <-chan struct{} {
	done := make(chan struct{})
	if cfg.nodeName == "" || cfg.labelInterval == 0 {
		close(done)
		return done
	}
	n, err := installer.InClusterNode(cfg.nodeName)
	if err != nil { // labelled a moment ago: not expected
		fmt.Printf("node %s: label not kept: %v\n", cfg.nodeName, err)
		close(done)
		return done
	}
	fmt.Printf("node %s: checking label %s every %s\n", cfg.nodeName, installer.NodeLabel, cfg.labelInterval)
	go func() {
		defer close(done)
		installer.KeepLabel(ctx, cfg.opts, n, cfg.labelInterval)
	}()
	return done
}

// label sets (on) or removes the node label when a node is named.
func label(ctx context.Context, cfg *config, on bool) error {
	if cfg.nodeName == "" {
		fmt.Println("no node name: node label left alone")
		return nil
	}
	n, err := installer.InClusterNode(cfg.nodeName)
	if err != nil {
		return fmt.Errorf("label node %s: %w", cfg.nodeName, err)
	}
	if on {
		err = n.Label(ctx)
	} else {
		err = n.Unlabel(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Printf("node %s: label %s %s\n", cfg.nodeName, installer.NodeLabel, map[bool]string{true: "set", false: "removed"}[on])
	return nil
}
