//go:build e2e

package harness

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RuntimeClassWatch is the RuntimeClass the README documents: handler
// watch, no nodeSelector (deploy/'s waits for the installer's label).
const RuntimeClassWatch = `apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: watch
handler: watch
`

// ProbeTimeoutSeconds is the exec probes' timeoutSeconds in
// SleeperDeployment: the kubelet's default of 1 s would count a probe
// slowed by a busy 2-core test machine as failed on either runtime.
const ProbeTimeoutSeconds = 5

// SleeperDeployment is a Deployment of replicas pods (label app=name) of
// one busybox container "main" that sleeps and exits 0 on SIGTERM; with
// probe, the container has an exec liveness probe running `true` every
// second, as a kubelet probes a real workload. runtimeClass "" means the
// node's default handler (runc).
func SleeperDeployment(name, runtimeClass string, replicas int, probe bool) string {
	rc, lp := "", ""
	if runtimeClass != "" {
		rc = "      runtimeClassName: " + runtimeClass + "\n"
	}
	if probe {
		lp = fmt.Sprintf(`        livenessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
          timeoutSeconds: %d
`, ProbeTimeoutSeconds)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
%[3]s      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: %[4]s
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]
%[5]s`, name, replicas, rc, BusyboxImage, lp)
}

// Scale sets Deployment name's replicas.
func (k *Cluster) Scale(name string, replicas int) error {
	_, err := k.Kubectl("scale", "deployment/"+name, "--replicas="+strconv.Itoa(replicas))
	return err
}

// WaitReadyPods waits until exactly n pods with label app=app exist, none
// terminating, and all of them are Ready.
func (k *Cluster) WaitReadyPods(app string, n int, timeout time.Duration) error {
	return k.waitFor(timeout, fmt.Sprintf("%d pods of %s ready", n, app), func() (bool, error) {
		out, err := k.Kubectl("get", "pods", "-l", "app="+app, "-o",
			`jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return false, err
		}
		lines := strings.Fields(out)
		ready := 0
		for _, l := range lines {
			if l == "/True" {
				ready++
			}
		}
		if len(lines) == n && ready == n {
			return true, nil
		}
		return false, fmt.Errorf("%d pods, %d ready", len(lines), ready)
	})
}

// probeSample is one sample of the kubelet's prober_probe_total.
var probeSample = regexp.MustCompile(`^prober_probe_total\{([^}]*)\} ([0-9.e+]+)$`)

var labelPair = regexp.MustCompile(`(\w+)="([^"]*)"`)

// ProbeCounts returns the kubelet's count of the probes it ran in the
// containers of the pods whose name starts with podPrefix, by
// "probe_type/result" (e.g. "Liveness/successful", "Liveness/failed"),
// from its /metrics/probes endpoint.
func (k *Cluster) ProbeCounts(podPrefix string) (map[string]float64, error) {
	out, err := k.kubeletGet("/metrics/probes")
	if err != nil {
		return nil, err
	}
	counts := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := probeSample.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[1], -1) {
			labels[p[1]] = p[2]
		}
		if !strings.HasPrefix(labels["pod"], podPrefix) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("probe metrics: %q: %w", sc.Text(), err)
		}
		counts[labels["probe_type"]+"/"+labels["result"]] += v
	}
	return counts, nil
}

// kubeletGet GETs path from the kubelet's API as the API server does,
// with its kubelet client certificate: the API server's node proxy
// refuses the node's loopback address. The kubelet serves with a
// self-signed certificate of its own, which is not checked.
func (k *Cluster) kubeletGet(path string) (string, error) {
	cert, err := tls.LoadX509KeyPair(k.pki.kubeletClient, k.pki.kubeletCK)
	if err != nil {
		return "", fmt.Errorf("kubelet client certificate: %w", err)
	}
	client := &http.Client{Timeout: commandTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true},
	}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", k.kubeletPort, path))
	if err != nil {
		return "", fmt.Errorf("kubelet %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err != nil {
		return "", fmt.Errorf("kubelet %s: %w", path, err)
	}
	return string(body), nil
}

// PauseKubelet stops the kubelet (SIGSTOP) until resume is called
// (SIGCONT): no probe, status update or pod change starts meanwhile, while
// containerd and the shims keep running. A test measuring the shims
// between probes pauses it, waits for the probes in flight to end, and
// measures. resume is idempotent.
func (k *Cluster) PauseKubelet() (resume func(), err error) {
	k.mu.Lock()
	var kubelet *component
	for _, c := range k.comps {
		if c.name == "kubelet" {
			kubelet = c
		}
	}
	k.mu.Unlock()
	if kubelet == nil || !kubelet.running() {
		return nil, fmt.Errorf("pause kubelet: not running")
	}
	pid := kubelet.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("pause kubelet: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { syscall.Kill(pid, syscall.SIGCONT) }) }, nil
}
