//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// TestNodeLogFull (issue 18, must-show 4, the full directory): the node log
// is on a tmpfs that is full. The shim runs, the container's true exit
// code reaches CRI, and the shim's counters show the records it could not
// write. Once there is room again, the next records go to the log.
func TestNodeLogFull(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	dir := filepath.Join(t.TempDir(), "nodelog")
	os.Mkdir(dir, 0o700)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("mount a tmpfs for the log: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	t.Setenv(nodelog.DirEnv, dir)
	filler := filepath.Join(dir, "filler")
	forEachVersion(t, func(t *testing.T, c *harness.Containerd) {
		fillLog(t, dir, filler)
		pod := harness.Pod{Name: "nlfull"}
		podID, err := c.RunPod(pod, "watch")
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.CreateContainer(podID, pod, harness.Container{Name: "app", Command: harness.Sh("exit 3")})
		if err != nil {
			t.Fatal(err)
		}
		mustCrictl(t, c, "start", id)
		waitState(t, c, id, "CONTAINER_EXITED")
		if _, code, _ := c.ContainerState(id); code != 3 {
			t.Fatalf("exit code %d through CRI with a full log, want 3", code)
		}
		pids := c.ShimPids("watch")
		if len(pids) != 1 {
			t.Fatalf("watch shims: %v", pids)
		}
		m, err := harness.WatchCounters(pids[0])
		if err != nil {
			t.Fatal(err)
		}
		if m["log_failed"] < 4 || m["log_appended"] != 0 {
			t.Fatalf("counters with a full log: log_failed %v log_appended %v, want >= 4 and 0", m["log_failed"], m["log_appended"])
		}
		// Room again: the next transitions are in the log.
		os.Remove(filler)
		cl, err := watchapi.Open("")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		before, err := cl.List()
		if err != nil {
			t.Fatal(err)
		}
		id2, err := c.CreateContainer(podID, pod, harness.Container{Name: "app2", Command: harness.Sh("exit 5")})
		if err != nil {
			t.Fatal(err)
		}
		mustCrictl(t, c, "start", id2)
		waitState(t, c, id2, "CONTAINER_EXITED")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var events []string
		for ev, err := range cl.Watch(ctx, before.Cursor) {
			if err != nil {
				t.Fatalf("watch after room was made: %v (got %v)", err, events)
			}
			if r := ev.Record; r.ContainerID == id2 {
				e := r.Event
				if r.ExitStatus != nil {
					e += fmt.Sprint(":", *r.ExitStatus)
				}
				events = append(events, e)
				if r.Event == "exited" {
					break
				}
			}
		}
		if fmt.Sprint(events) != "[created started exited:5]" {
			t.Fatalf("after room was made, the log has %v for the new container", events)
		}
		m2, _ := harness.WatchCounters(pids[0])
		t.Logf("counters with a full log: log_failed %v log_appended %v; after room was made: log_failed %v log_appended %v",
			m["log_failed"], m["log_appended"], m2["log_failed"], m2["log_appended"])
		mustCrictl(t, c, "rm", id, id2)
		mustCrictl(t, c, "stopp", podID)
		mustCrictl(t, c, "rmp", podID)
	})
}

// fillLog fills the file system of the log in dir: path, then the last
// page of the log's segment (a record that fits in it needs no room).
func fillLog(t *testing.T, dir, path string) {
	t.Helper()
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fill(t, path)
	for i := 0; ; i++ {
		_, err := w.Append(&nodelog.Record{Event: nodelog.EventCreated, Kind: nodelog.KindContainer, Namespace: "test", ContainerID: "padding"})
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil || i > 100 {
			t.Fatalf("padding the log: %v after %d records", err, i)
		}
	}
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if f == nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			// fill the last page's remainder too
			for {
				if _, err := f.Write(buf[:1]); err != nil {
					return
				}
			}
		}
	}
}
