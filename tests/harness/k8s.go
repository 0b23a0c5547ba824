//go:build e2e

package harness

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClusterOptions select how StartCluster sets up the cluster.
type ClusterOptions struct {
	// Containerd configures the node's containerd (default version: the
	// newest of Versions()).
	Containerd Options
}

// Cluster is a private single-node Kubernetes cluster on loopback, owned
// by one test: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and a kubelet on the test's own containerd (runtime
// handlers runc and watch), as hack/local-up-cluster.sh sets one up.
// Its state lives in C.Dir/k8s; its pods' cgroups under CgroupRoot in
// every cgroup hierarchy; its pod network is the bridge Bridge. All of it
// is removed when C is cleaned up, also on failure or interrupt.
type Cluster struct {
	t          testing.TB
	C          *Containerd // the node's container runtime
	Dir        string      // cluster state: certificates, etcd data, kubelet root, logs
	Kubeconfig string      // admin kubeconfig (group system:masters)
	Server     string      // API server URL
	NodeName   string      // "127.0.0.1" (see nodeName)
	CgroupRoot string      // kubelet's cgroupRoot, e.g. /watch-e2e-123
	Bridge     string      // CNI bridge name

	bins k8sBinaries
	pki  pki
	ids  map[string]identity
	// ports: etcd client and peer, API server, kubelet.
	etcdPort, peerPort, apiPort, kubeletPort int

	// madeLogLinkDir: containerLogLinks did not exist before the kubelet started.
	madeLogLinkDir bool

	mu    sync.Mutex
	comps []*component // started components, in start order
}

// StartCluster starts a private containerd with the test images and a
// single-node cluster on it, waits until the node is Ready and the default
// service account exists, and registers the cleanup. It skips t when not
// root or when a binary (Kubernetes' included) is missing.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	SkipWithoutKubernetes(t)
	if opts.Containerd.Version == "" {
		opts.Containerd.Version = NewestVersion()
	}
	c := Start(t, opts.Containerd)
	bin, _ := BinDir()
	k := &Cluster{
		t: t, C: c, Dir: filepath.Join(c.Dir, "k8s"), NodeName: nodeName,
		CgroupRoot: "/" + filepath.Base(c.Dir), Bridge: bridgeName(c.Dir), bins: k8sBinariesIn(bin),
	}
	k.pki = newPKI(filepath.Join(k.Dir, "pki"))
	k.Kubeconfig = filepath.Join(k.Dir, "admin.kubeconfig")
	c.onCleanup(k.teardown, k.removeHostState)
	start := time.Now()
	if err := k.start(); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Logf("cluster up in %s (state in %s)", time.Since(start).Round(100*time.Millisecond), k.Dir)
	return k
}

// nodeName is the node's name, an IP as in hack/local-up-cluster.sh: the
// kubelet refuses a loopback --node-ip but takes a name that is an IP as
// its InternalIP, which the API server then dials for logs, exec and
// port-forward, so the kubelet listens on loopback only.
const nodeName = "127.0.0.1"

// k8sBinaries are the paths of the cluster's programs in .bin.
type k8sBinaries struct {
	etcd, apiserver, controllerManager, scheduler, kubelet, kubectl string
}

func k8sBinariesIn(bin string) k8sBinaries {
	p := func(name string) string { return filepath.Join(bin, name) }
	return k8sBinaries{
		etcd: p("etcd"), apiserver: p("kube-apiserver"), controllerManager: p("kube-controller-manager"),
		scheduler: p("kube-scheduler"), kubelet: p("kubelet"), kubectl: p("kubectl"),
	}
}

func (b k8sBinaries) missing() []string {
	var out []string
	for _, p := range []string{b.etcd, b.apiserver, b.controllerManager, b.scheduler, b.kubelet, b.kubectl} {
		if _, err := os.Stat(p); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// RequireKubernetesEnv, set to 1, turns a missing Kubernetes binary from
// a skip into a failure: `make e2e` sets it, as `make deps` builds them,
// so CI cannot pass with the cluster scenarios silently skipped.
const RequireKubernetesEnv = "WATCH_E2E_REQUIRE_KUBERNETES"

// SkipWithoutKubernetes skips t when a Kubernetes binary is not in .bin
// (scripts/install-deps.sh builds them), or fails it under
// RequireKubernetesEnv.
func SkipWithoutKubernetes(t testing.TB) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv(RequireKubernetesEnv) == "1" {
		skip = t.Fatalf
	}
	bin, err := BinDir()
	if err != nil {
		skip("kubernetes: %v", err)
		return
	}
	if m := k8sBinariesIn(bin).missing(); len(m) > 0 {
		skip("kubernetes: missing %s (run scripts/install-deps.sh)", strings.Join(m, ", "))
	}
}

// start brings the components up in dependency order, each ready before
// the next starts.
func (k *Cluster) start() error {
	steps := []struct {
		name string
		f    func() error
	}{
		{"prepare", k.prepare},
		{"etcd", k.startEtcd},
		{"kube-apiserver", k.startAPIServer},
		{"kube-controller-manager", k.startControllerManager},
		{"kube-scheduler", k.startScheduler},
		{"pod network", k.startNetwork},
		{"kubelet", k.startKubelet},
		{"node ready", k.waitNodeReady},
	}
	for _, s := range steps {
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// prepare writes credentials and configuration and picks the ports.
func (k *Cluster) prepare() error {
	for _, d := range []string{"logs", "etcd", "kubelet", "kubelet-pki", "pod-logs", "volume-plugins", "ipam"} {
		if err := os.MkdirAll(filepath.Join(k.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := k.pki.generate(); err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	k.etcdPort, k.peerPort, k.apiPort, k.kubeletPort = ports[0], ports[1], ports[2], ports[3]
	k.Server = "https://127.0.0.1:" + strconv.Itoa(k.apiPort)
	return k.writeIdentities()
}

func (k *Cluster) writeIdentities() error {
	ids, err := identities(k.NodeName)
	if err != nil {
		return err
	}
	if err := writeTokenFile(k.path("tokens.csv"), ids); err != nil {
		return err
	}
	k.ids = map[string]identity{}
	for _, id := range ids {
		k.ids[id.name] = id
		if err := writeKubeconfig(k.path(id.name+".kubeconfig"), k.Server, k.pki.caCert, id); err != nil {
			return err
		}
	}
	return nil
}

// path returns name inside the cluster's dir.
func (k *Cluster) path(name string) string { return filepath.Join(k.Dir, name) }

// startComponent starts a component and records it for teardown.
func (k *Cluster) startComponent(name, bin string, args ...string) (*component, error) {
	comp, err := startComponent(k.path("logs"), name, bin, args)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.comps = append(k.comps, comp)
	k.mu.Unlock()
	return comp, nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// bridgeName derives the pod bridge's name from the instance dir, so that
// a stale sweep finds it again: "wk" and 10 hex digits (IFNAMSIZ is 16).
func bridgeName(dir string) string {
	return fmt.Sprintf("wk%x", sha256.Sum256([]byte(dir)))[:12]
}

// podSubnet derives a /24 for the bridge from the instance dir.
func podSubnet(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return fmt.Sprintf("10.%d.%d.0/24", 200+int(h[0])%50, h[1])
}

// waitFor polls cond every interval until it returns true, an error, or
// timeout passes; while waiting, every started component must keep running.
func (k *Cluster) waitFor(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if err := k.componentsRunning(); err != nil {
			return err
		}
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s (last: %v)", what, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// componentsRunning returns the exit of the first component that stopped.
func (k *Cluster) componentsRunning() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.comps {
		if !c.running() {
			return c.exitError()
		}
	}
	return nil
}

// LogPath returns the log file of a component: "etcd", "kube-apiserver",
// "kube-controller-manager", "kube-scheduler" or "kubelet".
func (k *Cluster) LogPath(component string) string {
	return filepath.Join(k.Dir, "logs", component+".log")
}
