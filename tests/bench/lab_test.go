//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestLab keeps pods of both runtimes running until /tmp/lab-stop exists.
func TestLab(t *testing.T) {
	c := harness.Start(t, harness.Options{Version: "2.4"})
	for _, rt := range runtimes {
		b := &bencher{t: t, c: c, rt: rt}
		for i := 0; i < labPods(); i++ {
			p := harness.Pod{Name: fmt.Sprintf("lab-%s-%d", rt, i)}
			os.MkdirAll(filepath.Join(c.Dir, "pods", p.Name), 0o755)
			podPath := b.json("pod-"+p.Name, c.PodConfig(p))
			ctPath := b.json("ctr-"+p.Name, c.ContainerConfig(sleeper("c0")))
			podID := b.crictl("runp", "--runtime", rt, podPath)
			b.crictl("start", b.crictl("create", podID, ctPath, podPath))
		}
		t.Logf("%s shims: %v", rt, c.ShimPids(rt))
	}
	os.WriteFile("/tmp/lab-dir", []byte(c.Dir), 0o644)
	for {
		if _, err := os.Stat("/tmp/lab-stop"); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
}

func labPods() int {
	if os.Getenv("LAB_PODS") != "" {
		return 2
	}
	return pods
}
