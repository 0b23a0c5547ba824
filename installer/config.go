package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"
)

// ErrConfig is returned, wrapped, for a containerd config the installer
// will not change: unreadable, not TOML, or of a version it does not know.
var ErrConfig = errors.New("installer: containerd config refused")

// mainConfig is containerd's main config file as read.
type mainConfig struct {
	path    string         // host path (what imports are relative to)
	file    string         // the file read and written: path, symlinks followed
	data    []byte         // the file's bytes
	doc     map[string]any // the file parsed
	version int64          // the config version, 2, 3 or 4
}

// readMainConfig reads and parses containerd's config from file (the
// installer's path of host path path).
func readMainConfig(path, file string) (*mainConfig, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (write one with `containerd config default`)", ErrConfig, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrConfig, path, err)
	}
	c, err := parseMainConfig(path, data)
	if err != nil {
		return nil, err
	}
	c.file = file
	return c, nil
}

// readConfig reads the main config, following symlinks as the host
// does: a config.toml that config management links elsewhere stays a
// link, and its target is what the installer edits.
func (o Options) readConfig() (*mainConfig, error) {
	file, err := o.hostTarget(o.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, o.Config, err)
	}
	return readMainConfig(o.Config, file)
}

// hostTarget returns, in the installer's filesystem, the file that host
// path p names once the symlinks of its last element are followed; an
// absolute link target is a host path (under HostRoot), not the
// installer's. A missing file is returned as itself.
func (o Options) hostTarget(p string) (string, error) {
	for range 40 {
		f := o.host(p)
		st, err := os.Lstat(f)
		if err != nil || st.Mode().Type() != fs.ModeSymlink {
			return f, nil
		}
		link, err := os.Readlink(f)
		if err != nil {
			return "", fmt.Errorf("read link: %w", err)
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = link
	}
	return "", fmt.Errorf("too many levels of symbolic links")
}

func parseMainConfig(path string, data []byte) (*mainConfig, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			return nil, fmt.Errorf("%w: parse %s: line %d column %d: %w", ErrConfig, path, row, col, err)
		}
		return nil, fmt.Errorf("%w: parse %s: %w", ErrConfig, path, err)
	}
	raw, ok := doc["version"]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no version key (a version 1 config); containerd 2.x configs are version 2, 3 or 4 (run `containerd config migrate`)", ErrConfig, path)
	}
	v, _ := raw.(int64)
	switch v {
	case 2, 3, 4:
	default:
		return nil, fmt.Errorf("%w: %s has config version %v; containerd 2.x configs are version 2, 3 or 4 (run `containerd config migrate`)", ErrConfig, path, raw)
	}
	return &mainConfig{path: path, data: data, doc: doc, version: v}, nil
}

// criRuntimePlugin returns the plugin whose containerd.runtimes table
// holds the CRI runtimes in a config of version v: containerd 2.x
// migrates version 2's "io.containerd.grpc.v1.cri" to it, file by file,
// imports included, so a drop-in speaks its main config's version.
func criRuntimePlugin(v int64) string {
	if v == 2 {
		return "io.containerd.grpc.v1.cri"
	}
	return "io.containerd.cri.v1.runtime"
}

// dropInHeader opens the drop-in file.
const dropInHeader = `# Runtime "watch" (containerd-shim-watch-v2), written by
# containerd-shim-watch-installer and removed by its uninstall: do not edit.
`

// dropIn returns the drop-in file registering runtime "watch" with the
// shim at shimPath, for main config c. The watch runtime takes the
// cgroup driver and OCI runtime binary of the config's runc runtime, so
// that pods on either handler run alike (the kubelet's cgroup driver must
// match SystemdCgroup).
func (c *mainConfig) dropIn(shimPath string) ([]byte, error) {
	plugin := criRuntimePlugin(c.version)
	watch := map[string]any{"runtime_type": RuntimeType, "runtime_path": shimPath}
	if opts := runcOptions(c.doc, plugin); len(opts) > 0 {
		watch["options"] = opts
	}
	doc := map[string]any{
		"version": c.version,
		"plugins": map[string]any{plugin: map[string]any{
			"containerd": map[string]any{"runtimes": map[string]any{RuntimeName: watch}},
		}},
	}
	body, err := toml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal drop-in: %w", err)
	}
	return append([]byte(dropInHeader), body...), nil
}

// runcOptions returns SystemdCgroup and BinaryName of the runc runtime's
// options in doc, those that are set.
func runcOptions(doc map[string]any, plugin string) map[string]any {
	opts := table(doc, "plugins", plugin, "containerd", "runtimes", "runc", "options")
	out := map[string]any{}
	for _, k := range []string{"SystemdCgroup", "BinaryName"} {
		if v, ok := opts[k]; ok {
			out[k] = v
		}
	}
	return out
}

// table walks doc down keys, returning nil where a table is missing.
func table(doc map[string]any, keys ...string) map[string]any {
	t := doc
	for _, k := range keys {
		next, _ := t[k].(map[string]any)
		if next == nil {
			return nil
		}
		t = next
	}
	return t
}
