//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestDemo is the body of `make demo` (scripts/demo.sh); it runs only with
// WATCH_DEMO=1 and prints what happens instead of asserting much.
func TestDemo(t *testing.T) {
	if os.Getenv("WATCH_DEMO") != "1" {
		t.Skip("skipping: demo runs with WATCH_DEMO=1 (make demo)")
	}
	harness.SkipWithoutWatchShim(t)
	c := harness.Start(t, harness.Options{Version: harness.Versions()[0]})
	fmt.Printf("containerd %s in %s\n", c.Version, c.Dir)
	events := subscribe(t, c)
	go printEvents(events)
	demoPod(t, c)
	_, err := c.Ctr("run", "--rm", "--runtime", harness.WatchRuntime, harness.BusyboxImage, "demo-ctr", "sh", "-c", "sleep 1; exit 5")
	fmt.Printf("ctr run demo-ctr: exit code %d\n", harness.ExitCode(err))
	time.Sleep(time.Second)
}

// demoPod runs a pod with two containers exiting 0 and 7 and prints their codes.
func demoPod(t *testing.T, c *harness.Containerd) {
	pod := harness.Pod{Name: "demo"}
	podID, err := c.RunPod(pod, "watch")
	if err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{"first": "sleep 1; exit 0", "second": "sleep 2; exit 7"}
	ids := map[string]string{}
	for name, script := range scripts {
		id, err := c.CreateContainer(podID, pod, harness.Container{Name: name, Command: harness.Sh(script)})
		if err != nil {
			t.Fatal(err)
		}
		mustCrictl(t, c, "start", id)
		ids[name] = id
	}
	for name, id := range ids {
		waitState(t, c, id, "CONTAINER_EXITED")
		_, code, _ := c.ContainerState(id)
		fmt.Printf("pod container %s: exit code %d\n", name, code)
	}
	mustCrictl(t, c, "stopp", podID)
	mustCrictl(t, c, "rmp", podID)
}

func printEvents(events <-chan harness.Event) {
	for e := range events {
		if e.ExitedAt.IsZero() {
			fmt.Printf("event %s %s %s\n", e.Namespace, e.Topic, e.Payload)
			continue
		}
		fmt.Printf("event %s %s container=%s pid=%d exit_status=%d\n", e.Namespace, e.Topic, e.ContainerID, e.Pid, e.ExitStatus)
	}
}
