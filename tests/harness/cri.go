//go:build e2e

package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Pod describes a host-network CRI pod sandbox.
type Pod struct {
	Name      string
	Namespace string // default "default"
	UID       string // default Name+"-uid"
	Labels    map[string]string
}

// Container describes a CRI container.
type Container struct {
	Name    string
	Image   string // default BusyboxImage
	Command []string
	Args    []string
	Labels  map[string]string
}

// Sh returns the busybox command running script with sh -c.
func Sh(script string) []string { return []string{"sh", "-c", script} }

// PodConfig returns the crictl JSON of p: host network, logs under Dir.
func (c *Containerd) PodConfig(p Pod) map[string]any {
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.UID == "" {
		p.UID = p.Name + "-uid"
	}
	return map[string]any{
		"metadata":      map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": p.UID},
		"log_directory": filepath.Join(c.Dir, "pods", p.Name),
		"labels":        nonNil(p.Labels),
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"network": 2}, // NODE
		}},
	}
}

// ContainerConfig returns the crictl JSON of ct; its log is <pod log dir>/<name>.log.
func (c *Containerd) ContainerConfig(ct Container) map[string]any {
	if ct.Image == "" {
		ct.Image = BusyboxImage
	}
	return map[string]any{
		"metadata": map[string]any{"name": ct.Name},
		"image":    map[string]any{"image": ct.Image},
		"command":  ct.Command,
		"args":     ct.Args,
		"log_path": ct.Name + ".log",
		"labels":   nonNil(ct.Labels),
		"linux":    map[string]any{},
	}
}

// WriteJSON writes v as JSON to a new file under Dir and returns its path.
func (c *Containerd) WriteJSON(name string, v any) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.Dir, "configs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, name+"-*.json")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(data)
	return f.Name(), err
}

// RunPod runs p with the CRI runtime handler ("runc" or "watch") and
// returns the pod sandbox ID.
func (c *Containerd) RunPod(p Pod, handler string) (string, error) {
	if err := os.MkdirAll(filepath.Join(c.Dir, "pods", p.Name), 0o755); err != nil {
		return "", err
	}
	path, err := c.WriteJSON("pod-"+p.Name, c.PodConfig(p))
	if err != nil {
		return "", err
	}
	out, err := c.Crictl("runp", "--runtime", handler, path)
	if err != nil {
		return "", fmt.Errorf("run pod: %w", err)
	}
	return strings.TrimSpace(out), nil
}

// CreateContainer creates ct in pod podID (started from p) and returns its ID.
func (c *Containerd) CreateContainer(podID string, p Pod, ct Container) (string, error) {
	podPath, err := c.WriteJSON("pod-"+p.Name, c.PodConfig(p))
	if err != nil {
		return "", err
	}
	ctPath, err := c.WriteJSON("ctr-"+ct.Name, c.ContainerConfig(ct))
	if err != nil {
		return "", err
	}
	out, err := c.Crictl("create", podID, ctPath, podPath)
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	return strings.TrimSpace(out), nil
}

// ContainerState returns the CRI state (e.g. CONTAINER_EXITED) and exit code of id.
func (c *Containerd) ContainerState(id string) (string, int, error) {
	out, err := c.Crictl("inspect", "--output", "json", id)
	if err != nil {
		return "", 0, err
	}
	var v struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return "", 0, fmt.Errorf("parse inspect: %w", err)
	}
	return v.Status.State, v.Status.ExitCode, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// CreateContainerFromConfig creates a container in pod podID (started from
// p) from a whole CRI container config, such as ContainerConfig's with
// fields added ("tty", "stdin"), and returns its ID.
func (c *Containerd) CreateContainerFromConfig(podID string, p Pod, cfg map[string]any) (string, error) {
	podPath, err := c.WriteJSON("pod-"+p.Name, c.PodConfig(p))
	if err != nil {
		return "", err
	}
	ctPath, err := c.WriteJSON("ctr", cfg)
	if err != nil {
		return "", err
	}
	out, err := c.Crictl("create", podID, ctPath, podPath)
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	return strings.TrimSpace(out), nil
}
