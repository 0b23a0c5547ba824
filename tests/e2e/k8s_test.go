//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// runtimeClassWatch is the RuntimeClass the README documents.
const runtimeClassWatch = harness.RuntimeClassWatch

// exitPod is a pod whose one container prints a line and exits 3, never
// restarted; runtimeClass "" means the node's default handler (runc).
func exitPod(name, runtimeClass string) string {
	rc := ""
	if runtimeClass != "" {
		rc = "  runtimeClassName: " + runtimeClass + "\n"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
spec:
%[2]s  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: %[3]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo output of %[1]s; exit 3"]
`, name, rc, harness.BusyboxImage)
}

// podStatus is the part of a pod's status the tests read.
type podStatus struct {
	Metadata struct {
		UID string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			State struct {
				Terminated *struct {
					ExitCode int    `json:"exitCode"`
					Reason   string `json:"reason"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// terminated describes the state of the pod's one container: "exit code
// N" once terminated.
func terminated(p podStatus) string {
	cs := p.Status.ContainerStatuses
	switch {
	case len(cs) != 1:
		return fmt.Sprintf("statuses %d", len(cs))
	case cs[0].State.Terminated == nil:
		return "not terminated"
	}
	return fmt.Sprintf("exit code %d", cs[0].State.Terminated.ExitCode)
}

func getPod(t *testing.T, k *harness.Cluster, name string) podStatus {
	t.Helper()
	out, err := k.Kubectl("get", "pod", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var p podStatus
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return p
}

// waitPodPhase waits until pod name is in phase, failing on timeout.
func waitPodPhase(t *testing.T, k *harness.Cluster, name, phase string, timeout time.Duration) podStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := getPod(t, k, name)
		if p.Status.Phase == phase {
			return p
		}
		if time.Now().After(deadline) {
			desc, _ := k.Kubectl("describe", "pod", name)
			t.Fatalf("pod %s: phase %q after %s, want %s\n%s", name, p.Status.Phase, timeout, phase, desc)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sandboxOf returns the runtime handler and network namespace path of the
// CRI sandbox of pod name, as containerd reports them.
func sandboxOf(t *testing.T, k *harness.Cluster, name string) (handler, netns string) {
	t.Helper()
	id, err := k.C.Crictl("pods", "--name", "^"+name+"$", "--quiet")
	if err != nil || strings.TrimSpace(id) == "" {
		t.Fatalf("sandbox of %s: %q %v", name, id, err)
	}
	out, err := k.C.Crictl("inspectp", strings.TrimSpace(id))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Status struct {
			RuntimeHandler string `json:"runtimeHandler"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("inspectp %s: %v", name, err)
	}
	for _, ns := range v.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			netns = ns.Path
		}
	}
	return v.Status.RuntimeHandler, netns
}

// TestKubernetesExitCode runs, on a real single-node cluster, a pod on
// RuntimeClass watch and one on the default runc, each container exiting
// 3 under restartPolicy Never: the kubelet must report exit code 3 for
// both and serve their logs; once the pods are deleted nothing of them may
// remain on the node.
func TestKubernetesExitCode(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	k := harness.StartCluster(t, harness.ClusterOptions{})
	if err := k.Apply(runtimeClassWatch); err != nil {
		t.Fatal(err)
	}
	pods := []struct{ name, runtimeClass, handler string }{
		{"exit-watch", "watch", "watch"},
		{"exit-runc", "", "runc"},
	}
	for _, p := range pods {
		if err := k.Apply(exitPod(p.name, p.runtimeClass)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var netns []string
	for _, p := range pods {
		st := waitPodPhase(t, k, p.name, "Failed", 2*time.Minute)
		if got := terminated(st); got != "exit code 3" {
			t.Errorf("pod %s: container %s, want terminated with exit code 3", p.name, got)
		}
		handler, ns := sandboxOf(t, k, p.name)
		if handler != p.handler && !(p.handler == "runc" && handler == "") {
			t.Errorf("pod %s: sandbox runtime handler %q, want %q", p.name, handler, p.handler)
		}
		netns = append(netns, ns)
		logs, err := k.Kubectl("logs", p.name)
		if err != nil || strings.TrimSpace(logs) != "output of "+p.name {
			t.Errorf("kubectl logs %s = %q, %v; want %q", p.name, logs, err, "output of "+p.name)
		}
	}
	t.Logf("both pods Failed with their logs served %s after creation", time.Since(start).Round(100*time.Millisecond))
	start = time.Now()
	if _, err := k.Kubectl("delete", "pod", "--wait", "--timeout=2m", pods[0].name, pods[1].name); err != nil {
		t.Fatal(err)
	}
	// The kubelet removes a deleted pod's sandboxes and log links in its
	// container garbage collection, which runs once a minute.
	waitNodeClean(t, k, 2*time.Minute)
	t.Logf("pods deleted and the node clean in %s", time.Since(start).Round(100*time.Millisecond))
	for _, ns := range netns {
		if _, err := os.Lstat(ns); ns != "" && err == nil {
			t.Errorf("network namespace %s of a deleted pod still exists", ns)
		}
	}
}

// waitNodeClean waits until the node holds nothing of deleted pods.
func waitNodeClean(t *testing.T, k *harness.Cluster, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := k.PodLeftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the pods were deleted, left on the node:\n%s", timeout, strings.Join(left, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
