//go:build e2e

package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startTimeout bounds the wait for each component to be ready.
const startTimeout = 2 * time.Minute

func (k *Cluster) startEtcd() error {
	client := "http://127.0.0.1:" + strconv.Itoa(k.etcdPort)
	_, err := k.startComponent("etcd", k.bins.etcd,
		"--data-dir", k.path("etcd"),
		"--listen-client-urls", client,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(k.peerPort))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	return k.waitFor(startTimeout, "etcd healthy", func() (bool, error) {
		body, err := httpGet(hc, client+"/health", "")
		return err == nil && strings.Contains(body, `"health":"true"`), err
	})
}

// startAPIServer runs kube-apiserver on 127.0.0.1. The endpoint
// reconciler is off: it refuses a loopback advertise address otherwise.
func (k *Cluster) startAPIServer() error {
	p := k.pki
	_, err := k.startComponent("kube-apiserver", k.bins.apiserver,
		"--etcd-servers", "http://127.0.0.1:"+strconv.Itoa(k.etcdPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(k.apiPort),
		"--endpoint-reconciler-type", "none",
		"--cert-dir", p.dir,
		"--tls-cert-file", p.serverCert,
		"--tls-private-key-file", p.serverKey,
		"--client-ca-file", p.caCert,
		"--token-auth-file", k.path("tokens.csv"),
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged",
		"--service-cluster-ip-range", serviceRange,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.saPub,
		"--service-account-signing-key-file", p.saKey,
		"--kubelet-client-certificate", p.kubeletClient,
		"--kubelet-client-key", p.kubeletCK,
		"--kubelet-preferred-address-types", "InternalIP",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	hc, err := k.httpClient()
	if err != nil {
		return err
	}
	return k.waitFor(startTimeout, "kube-apiserver ready", func() (bool, error) {
		body, err := httpGet(hc, k.Server+"/readyz", k.ids["admin"].token)
		return err == nil && strings.TrimSpace(body) == "ok", err
	})
}

// startControllerManager runs the controllers with a credential per
// controller (as kubeadm does); it signs service-account tokens and
// publishes the CA that pods' projected tokens carry. No HTTPS endpoint:
// nothing scrapes it.
func (k *Cluster) startControllerManager() error {
	_, err := k.startComponent("kube-controller-manager", k.bins.controllerManager,
		"--kubeconfig", k.path("controller-manager.kubeconfig"),
		"--leader-elect=false",
		"--secure-port", "0",
		"--use-service-account-credentials",
		"--service-account-private-key-file", k.pki.saKey,
		"--root-ca-file", k.pki.caCert,
		"--cluster-signing-cert-file", k.pki.caCert,
		"--cluster-signing-key-file", k.pki.caKey,
		"--allocate-node-cidrs=false",
	)
	return err
}

func (k *Cluster) startScheduler() error {
	_, err := k.startComponent("kube-scheduler", k.bins.scheduler,
		"--kubeconfig", k.path("scheduler.kubeconfig"),
		"--leader-elect=false",
		"--secure-port", "0",
	)
	return err
}

// startNetwork writes the bridge network into containerd's CNI conf dir
// and waits until containerd's CRI reports the network ready.
func (k *Cluster) startNetwork() error {
	conf := filepath.Join(k.C.Dir, "cni", "10-watch-e2e.conflist")
	err := writeTemplate(conf, cniTemplate, map[string]string{
		"Bridge": k.Bridge, "Subnet": podSubnet(k.C.Dir), "IPAMDir": k.path("ipam"),
	})
	if err != nil {
		return err
	}
	return k.waitFor(time.Minute, "containerd network ready", func() (bool, error) {
		out, err := k.C.Crictl("info")
		if err != nil {
			return false, err
		}
		return networkReady(out)
	})
}

// networkReady reads NetworkReady from `crictl info`.
func networkReady(info string) (bool, error) {
	var v struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status bool   `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil {
		return false, fmt.Errorf("crictl info: %w", err)
	}
	for _, c := range v.Status.Conditions {
		if c.Type == "NetworkReady" {
			return c.Status, nil
		}
	}
	return false, fmt.Errorf("crictl info: no NetworkReady condition")
}

// startKubelet creates the cluster's cgroup root in every hierarchy (the
// kubelet refuses a root that does not exist) and runs the kubelet.
func (k *Cluster) startKubelet() error {
	if err := createCgroupRoot(k.CgroupRoot); err != nil {
		return err
	}
	if _, err := os.Stat(containerLogLinks); os.IsNotExist(err) {
		k.madeLogLinkDir = true
	}
	cfg := k.path("kubelet.yaml")
	err := writeTemplate(cfg, kubeletConfigTemplate, kubeletConfig{
		Port: k.kubeletPort, CA: k.pki.caCert, Containerd: k.C.Address, CgroupRoot: k.CgroupRoot,
		PodLogs: k.path("pod-logs"), VolumePlugins: k.path("volume-plugins"),
	})
	if err != nil {
		return err
	}
	_, err = k.startComponent("kubelet", k.bins.kubelet,
		"--config", cfg,
		"--kubeconfig", k.path("kubelet.kubeconfig"),
		"--root-dir", k.path("kubelet"),
		"--cert-dir", k.path("kubelet-pki"),
		"--hostname-override", k.NodeName,
	)
	return err
}

// waitNodeReady waits until the node is Ready and the default service
// account exists (pods are refused before).
func (k *Cluster) waitNodeReady() error {
	err := k.waitFor(startTimeout, "node Ready", func() (bool, error) {
		out, err := k.Kubectl("get", "node", k.NodeName, "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return err == nil && out == "True", err
	})
	if err != nil {
		return err
	}
	return k.waitFor(startTimeout, "service account default", func() (bool, error) {
		_, err := k.Kubectl("get", "serviceaccount", "default", "-n", "default")
		return err == nil, err
	})
}

// httpClient trusts the cluster CA.
func (k *Cluster) httpClient() (*http.Client, error) {
	ca, err := os.ReadFile(k.pki.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// httpGet returns the body of a 200 response to GET url.
func httpGet(hc *http.Client, url, token string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}
