package installer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// NodeLabel is the label the installer sets on its node after a
// successful install and removes first on uninstall; RuntimeClass watch
// schedules pods only onto nodes carrying it (value "true").
const NodeLabel = "watchshim.github.io/installed"

// serviceAccountDir is where the kubelet mounts the pod's service account
// token and the cluster CA.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Node labels one node through the Kubernetes API with the pod's service
// account (in-cluster configuration, as client-go's rest.InClusterConfig
// reads it). A plain JSON merge patch over net/http is all it takes;
// client-go would add some forty modules to this module's graph for it.
type Node struct {
	Name   string
	Server string // https://host:port
	// tokenFile is re-read for every request: bound tokens rotate.
	tokenFile string
	client    *http.Client
}

// InClusterNode returns the Node name, talking to the API server named by
// KUBERNETES_SERVICE_HOST and _PORT with the mounted service account.
func InClusterNode(name string) (*Node, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("not in a cluster: KUBERNETES_SERVICE_HOST or _PORT unset")
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("cluster CA: no certificate in %s/ca.crt", serviceAccountDir)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &Node{
		Name: name, Server: "https://" + net.JoinHostPort(host, port),
		tokenFile: serviceAccountDir + "/token",
		client:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, nil
}

// Label sets NodeLabel=true on the node.
func (n *Node) Label(ctx context.Context) error {
	return n.patchLabel(ctx, "true")
}

// Unlabel removes NodeLabel from the node; a node without it is fine.
func (n *Node) Unlabel(ctx context.Context) error {
	return n.patchLabel(ctx, nil)
}

// Labelled reports whether the node carries NodeLabel=true. It reads
// with resourceVersion=0, from the API server's cache rather than etcd:
// a periodic check on every node must be cheap, and a read a moment
// stale is corrected by the next one.
func (n *Node) Labelled(ctx context.Context) (bool, error) {
	var node struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	body, err := n.do(ctx, http.MethodGet, "?resourceVersion=0", nil)
	if err != nil {
		return false, fmt.Errorf("get node %s: %w", n.Name, err)
	}
	if err := json.Unmarshal(body, &node); err != nil {
		return false, fmt.Errorf("get node %s: %w", n.Name, err)
	}
	return node.Metadata.Labels[NodeLabel] == "true", nil
}

func (n *Node) patchLabel(ctx context.Context, value any) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{NodeLabel: value}}})
	if err != nil {
		return err
	}
	if _, err := n.do(ctx, http.MethodPatch, "", body); err != nil {
		return fmt.Errorf("patch node %s: %w", n.Name, err)
	}
	return nil
}

// do sends one request about the node (a JSON merge patch when body is
// set) and returns the body of its 200 answer.
func (n *Node) do(ctx context.Context, method, query string, body []byte) ([]byte, error) {
	token, err := os.ReadFile(n.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	u := n.Server + "/api/v1/nodes/" + url.PathEscape(n.Name) + query
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data[:min(len(data), 4096)]))
	}
	return data, nil
}
