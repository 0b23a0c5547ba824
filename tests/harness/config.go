//go:build e2e

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

// configTemplate is containerd's config (version 3) for a private instance.
var configTemplate = template.Must(template.New("config").Parse(`version = 3
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"

[grpc]
  address = "{{.Address}}"

[ttrpc]
  address = "{{.Address}}.ttrpc"

[debug]
  level = "{{.LogLevel}}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{{.PauseImage}}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{{.Dir}}/cni"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "{{.RuncType}}"
  runtime_path = "{{.RuncShim}}"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{{.Runc}}"
  Root = "{{.Dir}}/runc"
{{- if .Watch}}

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.watch]
  runtime_type = "{{.WatchType}}"
  runtime_path = "{{.WatchShim}}"
{{- end}}
{{- if and .Watch .WatchOptions}}

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.watch.options]
{{.WatchOptions}}
{{- end}}
`))

type configData struct {
	Dir, Address, PauseImage string
	RuncType, RuncShim, Runc string
	WatchType, WatchShim     string
	WatchOptions             string
	LogLevel                 string
	Watch                    bool // runtime watch is configured
}

// writeConfig writes config.toml, the empty CNI conf dir and the PATH dir
// with runc and both shims into c.Dir.
func (c *Containerd) writeConfig() error {
	for _, d := range []string{"cni", "bin", "pods"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	links := map[string]string{"runc": c.bins.runc, RuncShim: c.bins.runcShim}
	if !c.noWatch {
		links[WatchShim] = c.bins.watchShim
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(c.Dir, "bin", name)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := writeCrictlConfig(c.Dir); err != nil {
		return err
	}
	f, err := os.Create(c.configPath())
	if err != nil {
		return err
	}
	defer f.Close()
	runc, watchOptions := c.bins.runc, c.watchOptions
	if c.ociRuntime != "" {
		runc = c.ociRuntime
		watchOptions = fmt.Sprintf("BinaryName = %q\n", c.ociRuntime) + watchOptions
	}
	return configTemplate.Execute(f, configData{
		Dir: c.Dir, Address: c.Address, PauseImage: PauseImage,
		RuncType: RuncRuntime, RuncShim: c.bins.runcShim, Runc: runc,
		WatchType: WatchRuntime, WatchShim: c.bins.watchShim, WatchOptions: watchOptions,
		LogLevel: c.logLevel, Watch: !c.noWatch,
	})
}

func (c *Containerd) configPath() string { return filepath.Join(c.Dir, "config.toml") }
