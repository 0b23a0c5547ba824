package main

import (
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness/tarlayer"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const group = `root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
`

// busyboxImage builds docker.io/library/busybox:watch-test from a static busybox.
func busyboxImage(bin string) (image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return image{}, err
	}
	applets, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return image{}, err
	}
	entries := baseDirs()
	entries = append(entries,
		tarlayer.File("bin/busybox", 0o755, data),
		tarlayer.File("etc/passwd", 0o644, []byte(passwd)),
		tarlayer.File("etc/group", 0o644, []byte(group)),
	)
	entries = append(entries, appletLinks(string(applets))...)
	layer, err := buildLayer(entries)
	if err != nil {
		return image{}, err
	}
	return image{
		name: "docker.io/library/busybox:watch-test", tag: "watch-test",
		layer: layer, cmd: []string{"sh"}, env: []string{defaultPath},
	}, nil
}

// pauseImage builds registry.k8s.io/pause:watch-test from a static pause binary.
func pauseImage(bin string) (image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return image{}, err
	}
	layer, err := buildLayer([]tarlayer.Entry{tarlayer.File("pause", 0o755, data)})
	if err != nil {
		return image{}, err
	}
	return image{
		name: "registry.k8s.io/pause:watch-test", tag: "watch-test",
		layer: layer, entrypoint: []string{"/pause"}, env: []string{defaultPath},
	}, nil
}

// InstallerImage is the reference of the node installer's image, as
// deploy/20-daemonset.yaml names it.
const InstallerImage = "localhost/containerd-shim-watch-installer:local"

// installerImage builds InstallerImage from the static installer and shim
// binaries, side by side in / (the installer installs the shim next to
// its own executable by default).
func installerImage(installer, shim string) (image, error) {
	inst, err := os.ReadFile(installer)
	if err != nil {
		return image{}, err
	}
	sh, err := os.ReadFile(shim)
	if err != nil {
		return image{}, err
	}
	layer, err := buildLayer([]tarlayer.Entry{
		tarlayer.File("containerd-shim-watch-installer", 0o755, inst),
		tarlayer.File("containerd-shim-watch-v2", 0o755, sh),
		tarlayer.Dir("host", 0o755),
		tarlayer.Dir("tmp", 0o1777),
	})
	if err != nil {
		return image{}, err
	}
	return image{
		name: InstallerImage, tag: "local", layer: layer,
		entrypoint: []string{"/containerd-shim-watch-installer"}, cmd: []string{"run"},
		env: []string{defaultPath},
	}, nil
}

// buildLayer returns an uncompressed tar of entries sorted by name.
func buildLayer(entries []tarlayer.Entry) ([]byte, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return tarlayer.Bytes(entries)
}

func baseDirs() []tarlayer.Entry {
	var entries []tarlayer.Entry
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "var", "var/run", "dev", "proc", "sys", "run"} {
		entries = append(entries, tarlayer.Dir(d, 0o755))
	}
	return append(entries, tarlayer.Dir("tmp", 0o1777))
}

// appletLinks returns a symlink to /bin/busybox for each applet path listed.
func appletLinks(list string) []tarlayer.Entry {
	var links []tarlayer.Entry
	for _, p := range strings.Fields(list) {
		p = strings.TrimPrefix(p, "/")
		if p == "bin/busybox" {
			continue
		}
		if path.Dir(p) != "." {
			links = append(links, tarlayer.Symlink(p, "/bin/busybox"))
		}
	}
	return links
}
