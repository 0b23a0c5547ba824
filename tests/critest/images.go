//go:build critest && e2e

package critest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness/tarlayer"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// layer returns a deterministic uncompressed tar layer of files, in the
// given order (hardlink targets must come first), owned by root.
func layer(files []tarlayer.Entry) (v1.Layer, error) {
	data, err := tarlayer.Bytes(files)
	if err != nil {
		return nil, err
	}
	return static.NewLayer(data, types.OCIUncompressedLayer), nil
}

// image returns an OCI image of layers with config cfg.
func image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	if len(cfg.Env) == 0 {
		cfg.Env = []string{defaultPath}
	}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

const passwd = `root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const group = `root:x:0:
www-data:x:33:
nogroup:x:65534:
`

// pgrep and ipcs are missing from Debian's busybox: small stand-ins.
const pgrep = `#!/bin/sh
# pgrep NAME: pids of the processes whose name is NAME.
found=1
for d in /proc/[0-9]*; do
	[ "$(cat "$d/comm" 2>/dev/null)" = "$1" ] && { echo "${d#/proc/}"; found=0; }
done
exit $found
`

const ipcs = `#!/bin/sh
# ipcs -m: the System V shared memory segments of this IPC namespace.
echo "------ Shared Memory Segments --------"
cat /proc/sysvipc/shm
`

// baseLayer builds the busybox base layer from the extracted Debian busybox
// package in bbRoot: every applet a hardlink to /bin/busybox, the glibc
// libraries it needs copied from the host, users and groups.
func baseLayer(bbRoot string) (v1.Layer, error) {
	bb := filepath.Join(bbRoot, "bin", "busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	libs, err := sharedLibs(bb)
	if err != nil {
		return nil, err
	}
	files := []tarlayer.Entry{}
	for _, d := range []string{"bin", "dev", "etc", "home", "lib", "lib/x86_64-linux-gnu", "lib64", "proc", "root",
		"sys", "usr", "usr/bin", "usr/local", "usr/local/bin", "usr/sbin", "var", "var/run", "var/www"} {
		files = append(files, tarlayer.Dir(d, 0o755))
	}
	files = append(files, tarlayer.Dir("tmp", 0o1777))
	files = append(files, tarlayer.File("bin/busybox", 0o755, data))
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, tarlayer.Hardlink("bin/"+a, 0o755, "bin/busybox"))
		}
	}
	for _, l := range libs {
		content, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		dir := strings.TrimPrefix(filepath.Dir(l), "/")
		if !hasDir(files, dir) {
			files = append(files, tarlayer.Dir(dir, 0o755))
		}
		files = append(files, tarlayer.File(strings.TrimPrefix(l, "/"), 0o755, content))
	}
	files = append(files,
		tarlayer.File("bin/pgrep", 0o755, []byte(pgrep)),
		tarlayer.File("bin/ipcs", 0o755, []byte(ipcs)),
		tarlayer.File("etc/passwd", 0o644, []byte(passwd)),
		tarlayer.File("etc/group", 0o644, []byte(group)),
		tarlayer.File("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n")),
	)
	return layer(files)
}

func hasDir(files []tarlayer.Entry, name string) bool {
	for _, f := range files {
		if f.Dir && f.Name == name {
			return true
		}
	}
	return false
}

// sharedLibs returns the paths of the shared libraries bin loads, as ldd
// names them (the loader included).
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	sort.Strings(libs)
	return libs, nil
}

// standIns returns the stand-in images by the references critest pulls.
// bbRoot is the extracted busybox package, bins holds the static nginx and
// nonewprivs stand-ins.
func standIns(bbRoot, bins string) (map[string]v1.Image, error) {
	base, err := baseLayer(bbRoot)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(bins, name)) }
	nginxBin, err := read("nginx")
	if err != nil {
		return nil, err
	}
	nnpBin, err := read("nonewprivs")
	if err != nil {
		return nil, err
	}
	nginxLayer, err := layer([]tarlayer.Entry{tarlayer.File("usr/sbin/nginx", 0o755, nginxBin)})
	if err != nil {
		return nil, err
	}
	nnpLayer, err := layer([]tarlayer.Entry{tarlayer.File("usr/local/bin/nonewprivs", 0o4755, nnpBin)})
	if err != nil {
		return nil, err
	}
	predefLayer, err := layer([]tarlayer.Entry{
		tarlayer.File("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000::/home:/bin/sh\n")),
		tarlayer.File("etc/group", 0o644, []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")),
	})
	if err != nil {
		return nil, err
	}
	httpdLayer, err := layer([]tarlayer.Entry{tarlayer.File("var/www/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))})
	if err != nil {
		return nil, err
	}
	marked := func(mark string) (v1.Image, error) {
		l, err := layer([]tarlayer.Entry{tarlayer.File("image-"+mark, 0o644, []byte(mark+"\n"))})
		if err != nil {
			return nil, err
		}
		return image(v1.Config{Cmd: []string{"sh"}}, base, l)
	}
	const k8s = "registry.k8s.io/e2e-test-images/"
	const staging = "gcr.io/k8s-staging-cri-tools/"
	type spec struct {
		cfg    v1.Config
		layers []v1.Layer
	}
	sh := v1.Config{Cmd: []string{"sh"}}
	specs := map[string]spec{
		k8s + "busybox:1.29-2": {sh, nil},
		k8s + "nginx:1.14-2": {v1.Config{Entrypoint: []string{"/usr/sbin/nginx"},
			Env: []string{defaultPath, "NGINX_ADDR=:80"}}, []v1.Layer{nginxLayer}},
		staging + "hostnet-nginx-" + runtime.GOARCH + ":latest": {v1.Config{Entrypoint: []string{"/usr/sbin/nginx"},
			Env: []string{defaultPath, "NGINX_ADDR=127.0.0.1:12003"}}, []v1.Layer{nginxLayer}},
		k8s + "httpd:2.4.39-4":                            {v1.Config{Cmd: []string{"sh", "-c", "echo 'httpd: serving on port 80'; exec httpd -f -p 80 -h /var/www"}}, []v1.Layer{httpdLayer}},
		k8s + "nonewprivs:1.3":                            {v1.Config{Cmd: []string{"/usr/local/bin/nonewprivs"}}, []v1.Layer{nnpLayer}},
		staging + "test-image-user-uid:latest":            {v1.Config{Cmd: []string{"sh"}, User: "1002"}, nil},
		staging + "test-image-user-username:latest":       {v1.Config{Cmd: []string{"sh"}, User: "www-data"}, nil},
		staging + "test-image-user-uid-group:latest":      {v1.Config{Cmd: []string{"sh"}, User: "1003:1004"}, nil},
		staging + "test-image-user-username-group:latest": {v1.Config{Cmd: []string{"sh"}, User: "www-data:1004"}, nil},
		staging + "test-image-predefined-group:latest":    {v1.Config{Cmd: []string{"sh"}, User: "1000"}, []v1.Layer{predefLayer}},
	}
	images := map[string]v1.Image{}
	for ref, s := range specs {
		img, err := image(s.cfg, append([]v1.Layer{base}, s.layers...)...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		images[ref] = img
	}
	for _, name := range []string{"test-image-latest:latest", "test-image-1:latest", "test-image-2:latest",
		"test-image-3:latest", "test-image-tag:test", "test-image-tag:all", "test-image-digest:latest"} {
		img, err := marked(name)
		if err != nil {
			return nil, err
		}
		images[staging+name] = img
	}
	same, err := marked("tags")
	if err != nil {
		return nil, err
	}
	for _, tag := range []string{"1", "2", "3"} {
		images[staging+"test-image-tags:"+tag] = same
	}
	return images, nil
}

// fingerprint returns a digest over the references and manifest digests of
// images: equal across runs when the images are built deterministically.
func fingerprint(images map[string]v1.Image) (string, error) {
	var lines []string
	for ref, img := range images {
		d, err := img.Digest()
		if err != nil {
			return "", err
		}
		lines = append(lines, ref+" "+d.String())
	}
	sort.Strings(lines)
	return fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Join(lines, "\n")))), nil
}
