package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// taskDir is the v2 runtime's bundle directory in containerd's state
// directory: <state>/io.containerd.runtime.v2.task/<namespace>/<id>.
const taskDir = "io.containerd.runtime.v2.task"

// tasksUsing returns "namespace/id" of every task bundle whose
// shim-binary-path names shim. containerd writes that file when it starts
// a shim and reads it to run `<binary> delete` for the bundle, after a
// restart too, so the binary must stay while such a bundle exists, whether
// its shim still runs or not.
func (o Options) tasksUsing(shim string) ([]string, error) {
	root := o.host(filepath.Join(o.StateDir, taskDir))
	files, err := filepath.Glob(filepath.Join(root, "*", "*", "shim-binary-path"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the bundle went meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		if string(data) == shim {
			bundle := filepath.Dir(f)
			out = append(out, filepath.Base(filepath.Dir(bundle))+"/"+filepath.Base(bundle))
		}
	}
	sort.Strings(out)
	return out, nil
}
