//go:build e2e

package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// Cluster-wide addresses: the service range (no kube-proxy runs, so only
// the API server's own service uses it) and the first service IP.
const (
	serviceRange = "10.0.0.0/24"
	serviceIP    = "10.0.0.1"
)

// identity is one user of the token file and the kubeconfig that logs in as it.
type identity struct {
	name, user string
	groups     []string
	token      string
}

// identities are the cluster's users: the admin (kubectl, the tests), the
// kubelet as a node (the Node authorizer and NodeRestriction apply to
// it), and the controller manager and scheduler with their bootstrap RBAC
// roles.
func identities(node string) ([]identity, error) {
	ids := []identity{
		{name: "admin", user: "watch-admin", groups: []string{"system:masters"}},
		{name: "kubelet", user: "system:node:" + node, groups: []string{"system:nodes"}},
		{name: "controller-manager", user: "system:kube-controller-manager"},
		{name: "scheduler", user: "system:kube-scheduler"},
	}
	for i := range ids {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		ids[i].token = hex.EncodeToString(b)
	}
	return ids, nil
}

// writeTokenFile writes the API server's --token-auth-file.
func writeTokenFile(path string, ids []identity) error {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s,%s,%s", id.token, id.user, id.user)
		if len(id.groups) > 0 {
			fmt.Fprintf(&b, ",%q", strings.Join(id.groups, ","))
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

var kubeconfigTemplate = template.Must(template.New("kubeconfig").Parse(`apiVersion: v1
kind: Config
clusters:
- name: watch-e2e
  cluster:
    server: {{.Server}}
    certificate-authority: {{.CA}}
users:
- name: {{.User}}
  user:
    token: {{.Token}}
contexts:
- name: watch-e2e
  context:
    cluster: watch-e2e
    user: {{.User}}
current-context: watch-e2e
`))

func writeKubeconfig(path, server, ca string, id identity) error {
	return writeTemplate(path, kubeconfigTemplate, map[string]string{
		"Server": server, "CA": ca, "User": id.user, "Token": id.token,
	})
}

// kubeletConfigTemplate is the kubelet's KubeletConfiguration. What this
// host needs: cgroup v1 allowed (failCgroupV1), the cgroupfs driver (no
// systemd; runc's options do not set SystemdCgroup either), no swap check,
// no local-storage isolation. Everything the kubelet writes lives under
// the cluster's dir, and pod cgroups under the cluster's own cgroup root.
// The API server reaches it with a client certificate of the cluster CA;
// every authenticated client may do anything (AlwaysAllow), as in
// hack/local-up-cluster.sh.
var kubeletConfigTemplate = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {{.Port}}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {{.CA}}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://{{.Containerd}}
imageServiceEndpoint: unix://{{.Containerd}}
cgroupDriver: cgroupfs
cgroupRoot: {{.CgroupRoot}}
failCgroupV1: false
failSwapOn: false
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
podLogsDir: {{.PodLogs}}
volumePluginDir: {{.VolumePlugins}}
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
`))

type kubeletConfig struct {
	Port                   int
	CA, Containerd         string
	CgroupRoot             string
	PodLogs, VolumePlugins string
}

// cniTemplate is the pod network: a bridge private to the cluster with
// host-local addresses whose state lives in the cluster's dir. No
// masquerading: pods talk to the node and each other only.
var cniTemplate = template.Must(template.New("cni").Parse(`{
  "cniVersion": "1.0.0",
  "name": "watch-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "{{.Bridge}}",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "{{.Subnet}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "{{.IPAMDir}}"
      }
    }
  ]
}
`))

func writeTemplate(path string, tmpl *template.Template, data any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tmpl.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}
