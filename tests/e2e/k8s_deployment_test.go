//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// deploymentReplicas is the size of each Deployment of the scenario.
const deploymentReplicas = 10

// webDeployment is a Deployment of n pods of two containers: "web", an
// HTTP server on 8080 answering with its pod's name (readiness: a TCP
// probe), and "ticker", printing a line every second.
func webDeployment(name, runtimeClass string, n int) string {
	rc := ""
	if runtimeClass != "" {
		rc = "      runtimeClassName: " + runtimeClass + "\n"
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[4]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
%[2]s      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: %[3]s
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo served by $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 2
      - name: ticker
        image: %[3]s
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 1; done"]
`, name, rc, harness.BusyboxImage, n)
}

// TestKubernetesDeployment is the first scenario: the shim
// installed through deploy/'s DaemonSet, a Deployment of 10 pods × 2
// containers on RuntimeClass watch and one on the default runc, all
// Ready; then on one pod of each: kubectl exec, logs, attach and
// port-forward.
func TestKubernetesDeployment(t *testing.T) {
	harness.SkipWithoutWatchShim(t)
	k := harness.StartCluster(t, harness.ClusterOptions{
		Containerd: harness.Options{Supervise: true, NoWatchRuntime: true},
	})
	if err := k.BuildInstallerImage(""); err != nil {
		t.Fatal(err)
	}
	if err := k.ApplyDeploy(); err != nil {
		t.Fatal(err)
	}
	if err := k.WaitInstalled(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ name, class string }{{"web-watch", "watch"}, {"web-runc", ""}} {
		start := time.Now()
		if err := k.Apply(webDeployment(d.name, d.class, deploymentReplicas)); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Kubectl("rollout", "status", "deployment/"+d.name, "--timeout=5m"); err != nil {
			desc, _ := k.Kubectl("describe", "pods", "-l", "app="+d.name)
			t.Fatalf("%v\n%s", err, desc)
		}
		t.Logf("%s: %d pods × 2 containers Ready in %s", d.name, deploymentReplicas, time.Since(start).Round(100*time.Millisecond))
		pod := firstPod(t, k, d.name)
		t.Run(d.name, func(t *testing.T) { podStreams(t, k, pod) })
	}
}

// firstPod returns the name of a pod of Deployment app.
func firstPod(t *testing.T, k *harness.Cluster, app string) string {
	t.Helper()
	out, err := k.Kubectl("get", "pods", "-l", "app="+app, "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil || out == "" {
		t.Fatalf("pods of %s: %q %v", app, out, err)
	}
	return out
}

// podStreams checks exec, logs, attach and port-forward on pod.
func podStreams(t *testing.T, k *harness.Cluster, pod string) {
	out, err := k.Kubectl("exec", pod, "-c", "web", "--", "sh", "-c", "echo exec in $HOSTNAME; exit 5")
	if strings.TrimSpace(out) != "exec in "+pod || err == nil || !strings.Contains(err.Error(), "exit code 5") {
		t.Errorf("exec: %q, %v; want its output and exit code 5", out, err)
	}
	if logs, err := k.Kubectl("logs", pod, "-c", "ticker", "--tail=3"); err != nil || !strings.Contains(logs, "tick") {
		t.Errorf("logs: %q, %v", logs, err)
	}
	if got := streamFor(t, k, 5*time.Second, "attach", pod, "-c", "ticker"); !strings.Contains(got, "tick") {
		t.Errorf("attach: got %q, want the ticker's lines", got)
	}
	if body := portForwardGet(t, k, pod); strings.TrimSpace(body) != "served by "+pod {
		t.Errorf("port-forward: GET / = %q, want %q", body, "served by "+pod)
	}
}

// kubectlCmd returns a kubectl command on the cluster, bound to ctx.
func kubectlCmd(ctx context.Context, t *testing.T, k *harness.Cluster, args ...string) *exec.Cmd {
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
}

// streamFor runs a streaming kubectl command for d and returns its output.
func streamFor(t *testing.T, k *harness.Cluster, d time.Duration, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, _ := kubectlCmd(ctx, t, k, args...).CombinedOutput()
	return string(out)
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)

// portForwardGet forwards a local port to the pod's 8080 and GETs /.
func portForwardGet(t *testing.T, k *harness.Cluster, pod string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := kubectlCmd(ctx, t, k, "port-forward", "pod/"+pod, "0:8080")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	sc := bufio.NewScanner(stdout)
	var port string
	for sc.Scan() {
		if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		t.Errorf("port-forward: no forwarding line")
		return ""
	}
	go io.Copy(io.Discard, stdout)
	resp, err := http.Get("http://127.0.0.1:" + port + "/")
	if err != nil {
		t.Errorf("port-forward: %v", err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
