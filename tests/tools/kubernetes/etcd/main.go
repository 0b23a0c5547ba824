// Command etcd is the test bed's etcd: the server Kubernetes pins
// (go.etcd.io/etcd/server/v3), run through its embed package with the few
// flags a single-member, loopback-only cluster needs. It exits when the
// server stops or on SIGINT/SIGTERM, after closing the server cleanly.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := embed.NewConfig()
	dataDir := flag.String("data-dir", "", "directory for the member's data (required)")
	client := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	name := flag.String("name", "default", "member name")
	flag.Parse()
	if *dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	cu, err := url.Parse(*client)
	if err != nil {
		return fmt.Errorf("--listen-client-urls: %w", err)
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		return fmt.Errorf("--listen-peer-urls: %w", err)
	}
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	return serve(cfg)
}

// serve starts the server, reports readiness on stderr and blocks until the
// server fails or a signal asks it to stop.
func serve(cfg *embed.Config) error {
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(os.Stderr, "etcd: ready")
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return fmt.Errorf("not ready after 60s")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-e.Err():
		return fmt.Errorf("serve: %w", err)
	case <-sig:
		return nil
	}
}
