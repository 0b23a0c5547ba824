//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// gracePeriod is the grace period the scenario deletes pods with.
const gracePeriod = 10 * time.Second

// endPod is a pod of one container running script, never restarted, with
// a memory limit of limit ("" for none).
func endPod(name, runtimeClass, script, limit string) string {
	rc, res := "", ""
	if runtimeClass != "" {
		rc = "  runtimeClassName: " + runtimeClass + "\n"
	}
	if limit != "" {
		res = fmt.Sprintf("    resources:\n      limits: {memory: %s}\n", limit)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
spec:
%[2]s  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: %[3]s
    imagePullPolicy: Never
    command: ["sh", "-c", %[4]q]
%[5]s`, name, rc, harness.BusyboxImage, script, res)
}

const (
	// oomScript doubles a shell string until the memory limit is hit.
	oomScript = "x=0123456789abcdef; while true; do x=$x$x; done"
	// termScript exits 0 on SIGTERM.
	termScript = "trap 'exit 0' TERM; sleep 2147483647 & wait"
	// ignoreScript ignores SIGTERM: only SIGKILL ends it.
	ignoreScript = "trap '' TERM; sleep 2147483647 & wait"
)

// TestKubernetesPodEnd is the fifth scenario, on RuntimeClass
// watch and on the default runc: a container exceeding its memory limit
// is reported OOMKilled with exit code 137; a pod deleted with a grace
// period whose container exits 0 on SIGTERM is reported exit 0 before the
// grace period ends, one whose container ignores SIGTERM is killed (137)
// only once the grace period is over; once every pod is deleted nothing of
// them is left on the node.
func TestKubernetesPodEnd(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	k := harness.StartCluster(t, harness.ClusterOptions{})
	if err := k.Apply(runtimeClassWatch); err != nil {
		t.Fatal(err)
	}
	classes := []struct{ suffix, class string }{{"watch", "watch"}, {"runc", ""}}
	for _, c := range classes {
		for _, p := range []struct{ name, script, limit string }{
			{"oom-", oomScript, "32Mi"}, {"term-", termScript, ""}, {"ignore-", ignoreScript, ""},
		} {
			if err := k.Apply(endPod(p.name+c.suffix, c.class, p.script, p.limit)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range classes {
		name := "oom-" + c.suffix
		st := waitPodPhase(t, k, name, "Failed", 3*time.Minute)
		if got := terminatedWithReason(st); got != "OOMKilled exit code 137" {
			t.Errorf("pod %s: container %s, want OOMKilled exit code 137", name, got)
		} else {
			t.Logf("pod %s: %s", name, got)
		}
	}
	graceful(t, k, classes[0].suffix, classes[1].suffix)
	start := time.Now()
	if _, err := k.Kubectl("delete", "pod", "--wait", "--timeout=2m", "oom-watch", "oom-runc"); err != nil {
		t.Fatal(err)
	}
	waitNodeClean(t, k, 2*time.Minute)
	t.Logf("every pod deleted and the node clean %s after the last deletion", time.Since(start).Round(100*time.Millisecond))
}

// terminatedWithReason is "REASON exit code N" for the one container of p.
func terminatedWithReason(p podStatus) string {
	got := terminated(p)
	if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
		got = cs[0].State.Terminated.Reason + " " + got
	}
	return got
}

// graceful deletes the term- and ignore- pods of each suffix at once with
// gracePeriod and checks when and how each container ended, as watched on
// the pod object before it is gone.
func graceful(t *testing.T, k *harness.Cluster, suffixes ...string) {
	t.Helper()
	var names []string
	for _, s := range suffixes {
		names = append(names, "term-"+s, "ignore-"+s)
	}
	watches := map[string]<-chan termination{}
	for _, n := range names {
		waitPodPhase(t, k, n, "Running", 2*time.Minute)
		watches[n] = watchTermination(t, k, n)
	}
	deleted := time.Now()
	args := append([]string{"delete", "pod", "--wait=false", fmt.Sprintf("--grace-period=%d", int(gracePeriod.Seconds()))}, names...)
	if _, err := k.Kubectl(args...); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		var term termination
		select {
		case term = <-watches[n]:
		case <-time.After(gracePeriod + time.Minute):
			t.Fatalf("pod %s: no terminated state %s after deletion", n, gracePeriod+time.Minute)
		}
		if term.err != nil {
			t.Errorf("pod %s: %v", n, term.err)
			continue
		}
		after := term.at.Sub(deleted)
		t.Logf("pod %s: exit code %d (%s) seen %s after deletion with grace period %s", n, term.code, term.reason, after.Round(100*time.Millisecond), gracePeriod)
		switch {
		case strings.HasPrefix(n, "term-") && (term.code != 0 || after >= gracePeriod):
			t.Errorf("pod %s: exit code %d %s after deletion, want 0 before the grace period (%s) ends", n, term.code, after, gracePeriod)
		case strings.HasPrefix(n, "ignore-") && (term.code != 137 || after < gracePeriod):
			t.Errorf("pod %s: exit code %d %s after deletion, want 137 once the grace period (%s) is over", n, term.code, after, gracePeriod)
		}
	}
	if _, err := k.Kubectl(append([]string{"wait", "--for=delete", "--timeout=2m"}, prefixAll("pod/", names)...)...); err != nil {
		t.Fatal(err)
	}
}

func prefixAll(prefix string, s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = prefix + v
	}
	return out
}

// termination is the first terminated state of a pod's container seen on
// a watch of the pod, and when it was seen.
type termination struct {
	at     time.Time
	code   int
	reason string
	err    error
}

// watchTermination watches pod (`kubectl get --watch`) until its container
// is terminated, and sends that state once; it returns once the watch has
// delivered the pod's current state, and stops at the test's end.
func watchTermination(t *testing.T, k *harness.Cluster, pod string) <-chan termination {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := kubectlCmd(ctx, t, k, "get", "pod", pod, "--watch", "-o", "json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan termination, 1)
	first := make(chan struct{})
	go func() {
		defer cmd.Wait()
		defer cancel()
		dec := json.NewDecoder(stdout)
		for n := 0; ; n++ {
			var p podStatus
			err := dec.Decode(&p)
			if n == 0 {
				close(first)
			}
			if err != nil {
				ch <- termination{err: fmt.Errorf("watch ended without a terminated state: %w", err)}
				return
			}
			if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
				ch <- termination{at: time.Now(), code: cs[0].State.Terminated.ExitCode, reason: cs[0].State.Terminated.Reason}
				return
			}
		}
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatalf("watch of pod %s: nothing in 30 s", pod)
	}
	return ch
}
