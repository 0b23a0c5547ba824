//go:build e2e

package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// InstallerLabel is the node label the installer sets after a successful
// install (installer.NodeLabel), RuntimeClass watch's nodeSelector.
const InstallerLabel = "watchshim.github.io/installed"

// NodePaths are the host paths the installer is pointed at on the
// cluster's node: all in the node containerd's dir, the shim in the dir at
// the head of containerd's PATH (/usr/local/bin on a node).
type NodePaths struct {
	Config, ConfDir, InstallDir, State, Socket, PidFile string
}

// NodePaths returns the installer's paths on the node.
func (k *Cluster) NodePaths() NodePaths {
	c := k.C
	return NodePaths{
		Config: c.ConfigPath(), ConfDir: filepath.Join(c.Dir, "conf.d"),
		InstallDir: c.PathDir(), State: filepath.Join(c.Dir, "state"),
		Socket: c.Address, PidFile: c.PidFile(),
	}
}

// Shim is the installed shim's path.
func (p NodePaths) Shim() string { return filepath.Join(p.InstallDir, WatchShim) }

// DropIn is the installer's drop-in file.
func (p NodePaths) DropIn() string { return filepath.Join(p.ConfDir, "containerd-shim-watch.toml") }

// BuildInstallerImage builds the installer and, with tests/images, the
// installer image around it and shim (.bin's when ""), and imports it into
// the node's containerd, replacing an image of the same reference.
func (k *Cluster) BuildInstallerImage(shim string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if shim == "" {
		shim = filepath.Join(root, ".bin", WatchShim)
	}
	dir, err := os.MkdirTemp(k.Dir, "installer-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	inst := filepath.Join(dir, "containerd-shim-watch-installer")
	if err := goCmd(root, "build", "-trimpath", "-o", inst, "./cmd/containerd-shim-watch-installer"); err != nil {
		return err
	}
	if err := goCmd(root, "run", "./tests/images", "-out", dir, "-installer", inst, "-shim", shim); err != nil {
		return err
	}
	if _, err := k.C.CtrNS("k8s.io", "images", "import", "--local", "--all-platforms", filepath.Join(dir, "installer.tar")); err != nil {
		return fmt.Errorf("import installer image: %w", err)
	}
	return nil
}

// goCmd runs the go command in dir, static builds.
func goCmd(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ApplyDeploy applies deploy/*.yaml in order, the DaemonSet pointed at
// the node: its env names NodePaths, a free metrics port and the
// signal:PIDFILE restart of the node's containerd (which must be supervised: Options.Supervise), one
// hostPath mounts the containerd dir at the same path under /host, and the
// API server is reached on loopback (the test bed runs no kube-proxy for
// the kubernetes Service). Everything else is applied as the files say.
func (k *Cluster) ApplyDeploy() error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	sort.Strings(files)
	if len(files) == 0 {
		return fmt.Errorf("no deploy/*.yaml")
	}
	for _, f := range files {
		if err := k.applyFile(f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// applyFile applies each document of a manifest file, as JSON.
func (k *Cluster) applyFile(f string) error {
	out, err := k.Kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(out)) // one object per document
	for dec.More() {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return err
		}
		if obj["kind"] == "DaemonSet" {
			if err := k.pointAtNode(obj); err != nil {
				return err
			}
		}
		data, _ := json.Marshal(obj)
		if err := k.Apply(string(data)); err != nil {
			return err
		}
	}
	return nil
}

func (k *Cluster) pointAtNode(ds map[string]any) error {
	spec, _ := dig(ds, "spec", "template", "spec")
	containers, _ := spec["containers"].([]any)
	if len(containers) != 1 {
		return fmt.Errorf("DaemonSet: %d containers, want 1", len(containers))
	}
	ctr := containers[0].(map[string]any)
	p := k.NodePaths()
	set := map[string]string{
		"WATCH_RESTART": "signal:" + p.PidFile, "WATCH_INSTALL_DIR": p.InstallDir,
		"WATCH_CONTAINERD_CONFIG": p.Config, "WATCH_CONTAINERD_CONF_DIR": p.ConfDir,
		"WATCH_CONTAINERD_STATE": p.State, "WATCH_CONTAINERD_SOCKET": p.Socket,
		// Test clusters share the machine's network: any free port.
		"WATCH_METRICS_ADDRESS": "127.0.0.1:0",
	}
	env, _ := ctr["env"].([]any)
	for _, e := range env {
		e := e.(map[string]any)
		name, _ := e["name"].(string)
		if v, ok := set[name]; ok {
			e["value"] = v
			delete(set, name)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("DaemonSet lacks env %v", set)
	}
	ctr["env"] = append(env,
		map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
		map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": fmt.Sprint(k.apiPort)})
	spec["volumes"] = []any{map[string]any{"name": "node", "hostPath": map[string]any{"path": k.C.Dir, "type": "Directory"}}}
	ctr["volumeMounts"] = []any{map[string]any{"name": "node", "mountPath": "/host" + k.C.Dir}}
	return nil
}

// dig walks nested JSON objects down keys.
func dig(obj map[string]any, keys ...string) (map[string]any, bool) {
	for _, key := range keys {
		next, ok := obj[key].(map[string]any)
		if !ok {
			return nil, false
		}
		obj = next
	}
	return obj, true
}

// NodeLabelValue returns the node's InstallerLabel value, "" when unset.
func (k *Cluster) NodeLabelValue() (string, error) {
	out, err := k.Kubectl("get", "node", k.NodeName, "-o", "jsonpath={.metadata.labels."+strings.ReplaceAll(InstallerLabel, ".", `\.`)+"}")
	return strings.TrimSpace(out), err
}

// WaitInstalled waits until the node carries InstallerLabel=true.
func (k *Cluster) WaitInstalled(timeout time.Duration) error {
	return k.waitFor(timeout, "node label "+InstallerLabel, func() (bool, error) {
		v, err := k.NodeLabelValue()
		if err == nil && v != "true" {
			err = fmt.Errorf("label %q", v)
		}
		return err == nil, err
	})
}
