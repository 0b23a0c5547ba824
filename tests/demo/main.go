//go:build e2e

// Command watch-demo is `make demo`: it shows, in under a minute, what the
// watch runtime is for. On a private containerd with two runtimes, runc
// (containerd's stock shim) and watch, it runs one pod on each; their
// containers exit while containerd is restarting; then it prints what CRI
// reports for each runtime, and the memory each pod's shim uses.
//
// Run it as root from the repository, after `make build` and
// `scripts/install-deps.sh demo` (`make demo` does all three):
//
//	go run -tags e2e ./tests/demo [-containerd 2.4] [-down 5s]
//
// It uses the real-stack test harness (tests/harness): everything lives in
// one temporary directory and everything it starts is removed when it
// ends, fails or is interrupted (Ctrl-C).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// runtimes are the two CRI runtime handlers the harness configures, the
// stock one first.
var runtimes = []struct{ handler, label string }{
	{"runc", "runc (stock)"},
	{"watch", "watch"},
}

// containers of each pod: name and the exit code its script ends with.
var containers = []struct {
	name string
	code int
}{{"nine", 9}, {"zero", 0}}

func main() {
	version := flag.String("containerd", "2.4", "containerd line to run: 2.2 or 2.4")
	down := flag.Duration("down", 5*time.Second, "how long containerd stays down")
	flag.Parse()
	r := &runner{}
	d := &demo{r: r, start: time.Now()}
	d.run(*version, *down)
	r.exit()
}

// demo is one run of the story; its steps print as they go.
type demo struct {
	r     *runner
	c     *harness.Containerd
	start time.Time
	n     int
	pods  map[string]string            // handler -> pod sandbox id
	ids   map[string]map[string]string // handler -> container name -> id
}

func (d *demo) run(version string, down time.Duration) {
	fmt.Println("watch-demo: the same pod on containerd's stock runtime and on watch")
	d.step(fmt.Sprintf("Starting a private containerd %s with two runtimes, runc (stock) and watch", version), func() {
		d.c = harness.Start(d.r, harness.Options{Version: version})
		d.watchSignals()
		d.detail("%s, all state in %s", d.containerdVersion(), d.c.Dir)
	})
	d.step("Starting pod \"stock\" on runtime runc and pod \"watch\" on runtime watch", func() {
		d.startPods()
		for _, ct := range containers {
			d.detail("container %-5s sh -c %q", ct.name, script(ct.code))
		}
	})
	d.step("Stopping containerd; while it is down, the containers exit", func() {
		d.exitWhileDown(down)
	})
	d.step("Starting containerd again: it reconnects to both shims", func() {
		if err := d.c.StartAgain(); err != nil {
			d.r.Fatalf("start containerd: %v", err)
		}
	})
	d.step("What CRI reports now (crictl inspect)", d.printExits)
	d.step("Memory per pod: the pod's shim process, from /proc/PID/smaps_rollup", d.printMemory)
	d.step("Cleaning up: pods, containerd, shims and "+d.c.Dir, d.r.runCleanups)
	fmt.Printf("done in %s\n", time.Since(d.start).Round(100*time.Millisecond))
}

// step prints "N. what ...", runs f and prints how long it took. After
// Ctrl-C it starts nothing: the harness is removing everything and exits.
func (d *demo) step(what string, f func()) {
	if d.r.interrupted.Load() {
		select {}
	}
	d.n++
	fmt.Printf("\n%d. %s ...\n", d.n, what)
	t0 := time.Now()
	f()
	d.detail("(%s)", time.Since(t0).Round(100*time.Millisecond))
}

// detail prints an indented line under the current step.
func (d *demo) detail(format string, args ...any) {
	fmt.Printf("   "+format+"\n", args...)
}

// watchSignals says what happens on Ctrl-C: the harness's own handler
// removes everything and exits; the demo stops reporting failures.
func (d *demo) watchSignals() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		d.r.interrupted.Store(true)
		fmt.Fprintf(os.Stderr, "\nwatch-demo: %v: removing everything it started ...\n", sig)
	}()
}

// containerdVersion returns "containerd v2.4.2" from ctr's version line.
func (d *demo) containerdVersion() string {
	out, err := d.c.Ctr("version")
	if err != nil {
		return "containerd " + d.c.Version
	}
	v := "containerd " + d.c.Version
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Version:" {
			v = "containerd " + f[1] // the server's is printed last
		}
	}
	return v
}
