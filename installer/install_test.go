package installer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// configV3 is an operator's config with comments, which must survive.
const configV3 = `# my containerd
version = 3
root = "/var/lib/containerd"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc" # the default

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
`

const configV2 = `version = 2

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`

// countRestart counts restarts and fails while fail is set.
type countRestart struct {
	n    int
	fail error
}

func (c *countRestart) Restart(context.Context) error {
	if c.fail != nil {
		return c.fail
	}
	c.n++
	return nil
}

func (c *countRestart) String() string { return "count" }

// bed is a host in a temp dir: HostRoot holds etc/containerd/config.toml;
// the shim to install is outside it.
type bed struct {
	t       *testing.T
	force   bool // uninstall --force
	opts    Options
	restart *countRestart
}

func newBed(t *testing.T, config string) *bed {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "host")
	shim := filepath.Join(dir, "image", ShimName)
	mustWrite(t, shim, "shim v1", 0o755)
	mustWrite(t, filepath.Join(root, DefaultConfig), config, 0o600)
	b := &bed{t: t, restart: &countRestart{}}
	b.opts = Options{HostRoot: root, Shim: shim, Restart: b.restart}.withDefaults()
	return b
}

func mustWrite(t *testing.T, path, data string, perm fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func (b *bed) read(hostPath string) string {
	b.t.Helper()
	data, err := os.ReadFile(b.opts.host(hostPath))
	if err != nil {
		b.t.Fatal(err)
	}
	return string(data)
}

func (b *bed) exists(hostPath string) bool {
	_, err := os.Lstat(b.opts.host(hostPath))
	return err == nil
}

func (b *bed) install() Result {
	b.t.Helper()
	r, err := Install(context.Background(), b.opts)
	if err != nil {
		b.t.Fatalf("install: %v", err)
	}
	return r
}

func (b *bed) uninstall() Result {
	b.t.Helper()
	r, err := Uninstall(context.Background(), b.opts, b.force)
	if err != nil {
		b.t.Fatalf("uninstall: %v", err)
	}
	return r
}

// fileState is what a re-run must not change about a file.
type fileState struct {
	data  string
	mode  fs.FileMode
	mtime time.Time
	ino   uint64
}

// snapshot returns the state of every file under root.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		data, _ := os.ReadFile(p)
		out[p] = fileState{string(data), st.Mode(), st.ModTime(), st.Sys().(*syscall.Stat_t).Ino}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]fileState) {
	t.Helper()
	for p, s := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s: %s removed", what, p)
		} else if a != s {
			t.Errorf("%s: %s changed: %+v -> %+v", what, p, s, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s created", what, p)
		}
	}
}

// runtimeTable returns runtimes.watch of the drop-in, under plugin.
func runtimeTable(t *testing.T, dropIn, plugin string) (int64, map[string]any) {
	t.Helper()
	var doc map[string]any
	if err := toml.Unmarshal([]byte(dropIn), &doc); err != nil {
		t.Fatalf("drop-in does not parse: %v\n%s", err, dropIn)
	}
	v, _ := doc["version"].(int64)
	return v, table(doc, "plugins", plugin, "containerd", "runtimes", "watch")
}

func TestInstallVersion3(t *testing.T) {
	b := newBed(t, configV3)
	r := b.install()
	if !r.Binary || !r.DropIn || !r.Config || !r.Restarted || b.restart.n != 1 {
		t.Fatalf("result %+v, restarts %d: want everything written and one restart", r, b.restart.n)
	}
	if got := b.read(b.opts.ShimPath()); got != "shim v1" {
		t.Errorf("installed shim %q", got)
	}
	v, watch := runtimeTable(t, b.read(b.opts.DropInPath()), "io.containerd.cri.v1.runtime")
	if v != 3 || watch["runtime_type"] != RuntimeType || watch["runtime_path"] != "/usr/local/bin/"+ShimName {
		t.Errorf("drop-in version %d, runtimes.watch %v", v, watch)
	}
	if opts, _ := watch["options"].(map[string]any); opts["SystemdCgroup"] != true {
		t.Errorf("watch options %v: want runc's SystemdCgroup = true", watch["options"])
	}
	want := strings.Replace(configV3, "version = 3\n", "version = 3\nimports = ['/etc/containerd/conf.d/"+DropInName+"']\n", 1)
	if got := b.read(DefaultConfig); got != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
	if got := b.read(DefaultConfig + BackupSuffix); got != configV3 {
		t.Errorf("backup:\n%s\nwant the original", got)
	}
	if b.exists(filepath.Join(DefaultConfDir, pendingName)) {
		t.Error("restart marker left after a successful restart")
	}
}

func TestInstallVersion2(t *testing.T) {
	b := newBed(t, configV2)
	b.install()
	v, watch := runtimeTable(t, b.read(b.opts.DropInPath()), "io.containerd.grpc.v1.cri")
	if v != 2 || watch["runtime_type"] != RuntimeType {
		t.Errorf("drop-in version %d, runtimes.watch %v; want version 2 under io.containerd.grpc.v1.cri", v, watch)
	}
	if _, ok := watch["options"]; ok {
		t.Errorf("watch options %v, runc has none", watch["options"])
	}
}

func TestInstallTwiceChangesNothing(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	before := snapshot(t, b.opts.HostRoot)
	time.Sleep(10 * time.Millisecond) // a rewrite would show in mtime
	if r := b.install(); !reflect.DeepEqual(r, Result{}) {
		t.Errorf("second install: %+v, want nothing changed", r)
	}
	sameSnapshot(t, "second install", before, snapshot(t, b.opts.HostRoot))
	if b.restart.n != 1 {
		t.Errorf("%d restarts, want 1", b.restart.n)
	}
}

func TestInstallImportExactlyOnce(t *testing.T) {
	for name, tc := range map[string]struct {
		imports string // the config's imports line
		want    []any  // imports after install
	}{
		"other import":     {`imports = ["/etc/other.toml"]`, []any{"/etc/other.toml", "/etc/containerd/conf.d/" + DropInName}},
		"glob covers it":   {`imports = ["/etc/containerd/conf.d/*.toml"]`, []any{"/etc/containerd/conf.d/*.toml"}},
		"relative path":    {`imports = ["conf.d/` + DropInName + `"]`, []any{"conf.d/" + DropInName}},
		"multi-line array": {"imports = [\n  \"/a.toml\", # first\n  '/b].toml',\n]", []any{"/a.toml", "/b].toml", "/etc/containerd/conf.d/" + DropInName}},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBed(t, "version = 3\n"+tc.imports+"\n\n[grpc]\n  address = \"/run/x.sock\"\n")
			b.install()
			b.install()
			var doc map[string]any
			if err := toml.Unmarshal([]byte(b.read(DefaultConfig)), &doc); err != nil {
				t.Fatal(err)
			}
			if got := doc["imports"].([]any); !equalAny(got, tc.want) {
				t.Errorf("imports %v, want %v", got, tc.want)
			}
			if table(doc, "grpc")["address"] != "/run/x.sock" {
				t.Errorf("grpc.address lost: %v", doc)
			}
		})
	}
}

func equalAny(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestInstallRefusesConfig(t *testing.T) {
	for name, config := range map[string]string{
		"malformed":         "version = 3\n[plugins\nfoo = ",
		"version 1":         "version = 1\n",
		"no version":        "root = \"/var/lib/containerd\"\n",
		"imports no array":  "version = 3\nimports = \"/x.toml\"\n",
		"imports of tables": "version = 3\nimports = [{a = 1}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			b := newBed(t, config)
			before := snapshot(t, b.opts.HostRoot)
			_, err := Install(context.Background(), b.opts)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("install: %v, want ErrConfig", err)
			}
			t.Logf("refused: %v", err)
			sameSnapshot(t, "refused install", before, snapshot(t, b.opts.HostRoot))
			if b.restart.n != 0 {
				t.Errorf("%d restarts after a refusal", b.restart.n)
			}
		})
	}
}

func TestInstallMissingConfigRefused(t *testing.T) {
	b := newBed(t, configV3)
	os.Remove(b.opts.host(DefaultConfig))
	before := snapshot(t, b.opts.HostRoot)
	if _, err := Install(context.Background(), b.opts); !errors.Is(err, ErrConfig) {
		t.Fatalf("install: %v, want ErrConfig", err)
	}
	sameSnapshot(t, "refused install", before, snapshot(t, b.opts.HostRoot))
}

func TestUninstallRestores(t *testing.T) {
	for name, config := range map[string]string{"v3": configV3, "v2": configV2, "with imports": "version = 3\nimports = ['/x.toml'] # keep\n"} {
		t.Run(name, func(t *testing.T) {
			b := newBed(t, config)
			b.install()
			r := b.uninstall()
			if !r.Binary || !r.DropIn || !r.Config || !r.Restarted || b.restart.n != 2 {
				t.Errorf("result %+v, restarts %d: want everything removed and a second restart", r, b.restart.n)
			}
			if got := b.read(DefaultConfig); got != config {
				t.Errorf("config after uninstall:\n%s\nwant the original:\n%s", got, config)
			}
			for _, p := range []string{b.opts.ShimPath(), b.opts.DropInPath(), DefaultConfig + BackupSuffix} {
				if b.exists(p) {
					t.Errorf("%s left after uninstall", p)
				}
			}
			if r := b.uninstall(); !reflect.DeepEqual(r, Result{}) || b.restart.n != 2 {
				t.Errorf("second uninstall: %+v, %d restarts; want nothing", r, b.restart.n)
			}
		})
	}
}

// An operator edited the config after the install: uninstall keeps the
// edit and takes out only the import.
func TestUninstallKeepsLaterEdits(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	edited := b.read(DefaultConfig) + "\n[debug]\n  level = \"debug\"\n"
	mustWrite(t, b.opts.host(DefaultConfig), edited, 0o600)
	b.uninstall()
	if got, want := b.read(DefaultConfig), configV3+"\n[debug]\n  level = \"debug\"\n"; got != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
}

// While a watch task's bundle names the binary, uninstall changes
// nothing; with force it removes the registration and keeps the binary;
// once the task is gone it removes the binary too.
func TestUninstallWhileInUse(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	bundle := b.opts.host(filepath.Join(DefaultStateDir, taskDir, "k8s.io", "abc"))
	mustWrite(t, filepath.Join(bundle, "shim-binary-path"), b.opts.ShimPath(), 0o600)
	other := b.opts.host(filepath.Join(DefaultStateDir, taskDir, "k8s.io", "runc-task"))
	mustWrite(t, filepath.Join(other, "shim-binary-path"), "/usr/bin/containerd-shim-runc-v2", 0o600)
	before := snapshot(t, b.opts.HostRoot)
	r := b.uninstall()
	if r.Binary || r.Config || r.DropIn || r.Restarted || !reflect.DeepEqual(r.InUse, []string{"k8s.io/abc"}) {
		t.Fatalf("uninstall with a watch task: %+v, want nothing changed and k8s.io/abc in use", r)
	}
	sameSnapshot(t, "uninstall while in use", before, snapshot(t, b.opts.HostRoot))

	b.force = true
	r = b.uninstall()
	if r.Binary || !r.Config || !r.DropIn || !r.Restarted {
		t.Errorf("forced uninstall with a watch task: %+v, want the registration removed, the binary kept", r)
	}
	if !b.exists(b.opts.ShimPath()) || b.exists(b.opts.DropInPath()) || b.read(DefaultConfig) != configV3 {
		t.Errorf("forced uninstall: want the binary kept, the drop-in removed, the config restored")
	}
	os.RemoveAll(bundle)
	if r := b.uninstall(); !r.Binary || b.exists(b.opts.ShimPath()) || r.Restarted {
		t.Errorf("uninstall once the task is gone: %+v, want the binary removed, no restart", r)
	}
}

// The shim is replaced by rename: a running shim (an open file here)
// keeps the old inode, the path gets the new content, and no temp file
// is left.
func TestInstallReplacesBinaryAtomically(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	running, err := os.Open(b.opts.host(b.opts.ShimPath()))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	mustWrite(t, b.opts.Shim, "shim v2", 0o755)
	if r := b.install(); !r.Binary || r.DropIn || r.Config || r.Restarted {
		t.Errorf("upgrade: %+v, want only the binary replaced, no restart", r)
	}
	if got := b.read(b.opts.ShimPath()); got != "shim v2" {
		t.Errorf("installed %q, want shim v2", got)
	}
	old := make([]byte, 16)
	n, _ := running.ReadAt(old, 0)
	if string(old[:n]) != "shim v1" {
		t.Errorf("the running shim's file reads %q, want its old content", old[:n])
	}
	entries, _ := os.ReadDir(b.opts.host(DefaultInstallDir))
	if len(entries) != 1 {
		t.Errorf("install dir holds %d entries, want only the shim", len(entries))
	}
}

// A restart that failed is retried by the next install even though no
// file changes then.
func TestInstallRetriesFailedRestart(t *testing.T) {
	b := newBed(t, configV3)
	b.restart.fail = errors.New("unit not found")
	if _, err := Install(context.Background(), b.opts); err == nil {
		t.Fatal("install with a failing restart succeeded")
	}
	b.restart.fail = nil
	if r := b.install(); !r.Restarted || r.DropIn || r.Config {
		t.Errorf("re-run: %+v, want the pending restart done and no file written", r)
	}
	if r := b.install(); r.Restarted {
		t.Errorf("third run restarted again")
	}
}
