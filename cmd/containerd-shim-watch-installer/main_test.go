package main

import (
	"testing"
	"time"
)

// A boolean environment value that is not a boolean is refused, not read
// as false: WATCH_UNINSTALL_ON_EXIT=yes must not silently keep the
// runtime installed when the DaemonSet is deleted.
func TestBadBoolEnvRefused(t *testing.T) {
	for _, env := range []string{"WATCH_UNINSTALL_ON_EXIT", "WATCH_UNINSTALL_FORCE"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("WATCH_RESTART", "none")
			t.Setenv(env, "yes")
			if c, err := parseFlags("run", nil); err == nil {
				t.Errorf("%s=yes accepted: %+v", env, c)
			}
			t.Setenv(env, "true")
			c, err := parseFlags("run", nil)
			if err != nil {
				t.Fatalf("%s=true: %v", env, err)
			}
			if !c.uninstallOnExit && !c.force {
				t.Errorf("%s=true not read", env)
			}
		})
	}
}

// A metrics address that is not HOST:PORT with a numeric port and an IP
// (or localhost) is refused when the flags are read, before anything is
// installed; a good one, or none for run, is accepted.
func TestBadMetricsAddressRefused(t *testing.T) {
	t.Setenv("WATCH_RESTART", "none")
	for _, addr := range []string{"9464", "host:9464", ":port", "127.0.0.1:70000", "[::1:9464"} {
		if c, err := parseFlags("run", []string{"--metrics-address", addr}); err == nil {
			t.Errorf("--metrics-address %q accepted: %+v", addr, c.metrics)
		}
		t.Setenv("WATCH_METRICS_ADDRESS", addr)
		if _, err := parseFlags("metrics", nil); err == nil {
			t.Errorf("WATCH_METRICS_ADDRESS=%q accepted", addr)
		}
		t.Setenv("WATCH_METRICS_ADDRESS", "")
	}
	for cmd, want := range map[string]string{"run": "", "metrics": "127.0.0.1:9464"} {
		c, err := parseFlags(cmd, nil)
		if err != nil || c.metrics.address != want {
			t.Errorf("%s: address %q, %v; want %q", cmd, c.metrics.address, err, want)
		}
	}
	for _, addr := range []string{":9464", "0.0.0.0:9464", "[::1]:0", "localhost:9464"} {
		if _, err := parseFlags("run", []string{"--metrics-address", addr}); err != nil {
			t.Errorf("--metrics-address %q: %v", addr, err)
		}
	}
}

// The label interval defaults to a minute; a value that is not a
// duration, or one so short it would poll the API server in a loop, is
// refused; 0 turns the check off.
func TestLabelInterval(t *testing.T) {
	t.Setenv("WATCH_RESTART", "none")
	if c, err := parseFlags("run", nil); err != nil || c.labelInterval != time.Minute {
		t.Errorf("default: %v, %v; want 1m0s", c.labelInterval, err)
	}
	for _, v := range []string{"60", "soon", "10ms", "-5s"} {
		t.Setenv("WATCH_LABEL_INTERVAL", v)
		if c, err := parseFlags("run", nil); err == nil {
			t.Errorf("WATCH_LABEL_INTERVAL=%s accepted: %v", v, c.labelInterval)
		}
	}
	for v, want := range map[string]time.Duration{"0": 0, "2s": 2 * time.Second} {
		t.Setenv("WATCH_LABEL_INTERVAL", v)
		if c, err := parseFlags("run", nil); err != nil || c.labelInterval != want {
			t.Errorf("WATCH_LABEL_INTERVAL=%s: %v, %v", v, c.labelInterval, err)
		}
	}
}
