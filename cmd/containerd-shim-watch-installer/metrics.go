package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/nodemetrics"
)

// metricsConfig is where the node metrics are served and read from.
type metricsConfig struct {
	address string // "" for `run`: no metrics
	logDir  string // the node log's host path
}

// metricsFlags defines the flags of the metrics endpoint. The metrics
// command serves on 127.0.0.1 by default; run serves only when asked.
func metricsFlags(fs *flag.FlagSet, cmd string, c *metricsConfig) {
	def, help := "", "run: serve the node's Prometheus metrics at HOST:PORT/metrics (empty: off)"
	if cmd == "metrics" {
		def = net.JoinHostPort("127.0.0.1", strconv.Itoa(nodemetrics.DefaultPort))
		help = "serve the node's Prometheus metrics at HOST:PORT/metrics"
	}
	if v := os.Getenv("WATCH_METRICS_ADDRESS"); v != "" {
		def = v
	}
	fs.StringVar(&c.address, "metrics-address", def, help+" ($WATCH_METRICS_ADDRESS)")
	fs.StringVar(&c.logDir, "log-dir", nodelog.Dir(), "the node lifecycle log's directory (host path; $"+nodelog.DirEnv+")")
}

// startMetrics listens on the metrics address, if one is set, and serves
// the node's metrics until ctx ends. A bad or busy address is an error
// before anything else happens.
func startMetrics(ctx context.Context, cfg *config) (<-chan error, error) {
	done := make(chan error, 1)
	if cfg.metrics.address == "" {
		close(done)
		return done, nil
	}
	l, err := nodemetrics.Listen(cfg.metrics.address)
	if err != nil {
		return nil, err
	}
	c := nodemetrics.New(nodemetrics.Options{LogDir: cfg.metrics.logDir, HostRoot: cfg.opts.HostRoot})
	fmt.Printf("serving node metrics at http://%s/metrics (node log %s)\n", l.Addr(), cfg.metrics.logDir)
	go func() { done <- nodemetrics.Serve(ctx, l, c) }()
	return done, nil
}

// serveMetrics implements `metrics`: serve until SIGTERM or SIGINT.
func serveMetrics(cfg *config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done, err := startMetrics(ctx, cfg)
	if err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, "metrics: stopped")
	return nil
}
