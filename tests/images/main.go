// Command images writes the deterministic OCI image archives used by the
// end-to-end tests: a busybox image and a pause image; or, with -installer,
// only the node installer's image (installer.tar), which holds the binaries
// as built now and is therefore built apart from the other two.
//
// Usage: go run ./tests/images -out .bin/images -busybox /bin/busybox -pause .bin/images/pause
//
//	go run ./tests/images -out .bin/images -installer .bin/containerd-shim-watch-installer -shim .bin/containerd-shim-watch-v2
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("out", ".bin/images", "output directory for the image archives")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox binary")
	pause := flag.String("pause", ".bin/images/pause", "static pause binary")
	installer := flag.String("installer", "", "static installer binary: write only installer.tar")
	shim := flag.String("shim", ".bin/containerd-shim-watch-v2", "static shim binary for installer.tar")
	flag.Parse()
	var err error
	if *installer != "" {
		err = runInstaller(*out, *installer, *shim)
	} else {
		err = run(*out, *busybox, *pause)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(out, busybox, pause string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bb, err := busyboxImage(busybox)
	if err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	pa, err := pauseImage(pause)
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	for file, img := range map[string]image{"busybox.tar": bb, "pause.tar": pa} {
		if err := writeArchive(filepath.Join(out, file), img); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
	}
	return nil
}

func runInstaller(out, installer, shim string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	img, err := installerImage(installer, shim)
	if err != nil {
		return fmt.Errorf("installer image: %w", err)
	}
	return writeArchive(filepath.Join(out, "installer.tar"), img)
}
