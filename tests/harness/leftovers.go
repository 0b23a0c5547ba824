//go:build e2e

package harness

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// CrictlWithin runs crictl as Crictl does, but with crictl's own request
// timeout set to timeout: crictl gives up (and its gRPC deadline cancels
// the call inside containerd) after that long, as a kubelet does.
func (c *Containerd) CrictlWithin(timeout time.Duration, args ...string) (string, error) {
	ep := "unix://" + c.Address
	full := append([]string{"--config", filepath.Join(c.Dir, "crictl.yaml"),
		"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", timeout.String()}, args...)
	return c.run(context.Background(), commandTimeout, c.bins.crictl, full)
}

// Bundles returns the task bundles containerd holds in namespace ns
// (state/io.containerd.runtime.v2.task/<ns>/<id>), hidden ones (being
// removed) included.
func (c *Containerd) Bundles(ns string) []string {
	entries, _ := os.ReadDir(filepath.Join(c.Dir, "state", "io.containerd.runtime.v2.task", ns))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// idRE matches the 64-hex ids CRI gives pods and containers.
var idRE = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// LoggedIDSockets returns the shim sockets (in /run/containerd/s) that
// exist for any 64-hex id containerd's log mentions, as a group or task
// id in namespace ns. A shim whose start was cancelled before containerd
// logged its address is found this way too: its sandbox id is in the log.
func (c *Containerd) LoggedIDSockets(ns string) []string {
	data, err := os.ReadFile(c.LogPath())
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, id := range idRE.FindAllString(string(data), -1) {
		if seen[id] {
			continue
		}
		seen[id] = true
		p := shimSocket(c.Address, ns, id, false)
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
