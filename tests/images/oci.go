package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness/tarlayer"
)

// Media types of the OCI image specification.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// image is one single-layer linux/amd64 image.
type image struct {
	name       string // full reference, e.g. docker.io/library/busybox:watch-test
	tag        string
	layer      []byte
	entrypoint []string
	cmd        []string
	env        []string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// blobs maps digests to content and keeps the archive's blob set.
type blobs map[string][]byte

func (b blobs) add(media string, data []byte) descriptor {
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	b[d] = data
	return descriptor{MediaType: media, Digest: d, Size: int64(len(data))}
}

func (b blobs) addJSON(media string, v any) (descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, err
	}
	return b.add(media, data), nil
}

// imageConfig returns the OCI image configuration of img.
func imageConfig(img image, layer descriptor) map[string]any {
	cfg := map[string]any{"Env": img.env}
	if len(img.entrypoint) > 0 {
		cfg["Entrypoint"] = img.entrypoint
	}
	if len(img.cmd) > 0 {
		cfg["Cmd"] = img.cmd
	}
	return map[string]any{
		"created":      tarlayer.Epoch.Format("2006-01-02T15:04:05Z"),
		"architecture": "amd64",
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layer.Digest}},
		"history":      []map[string]any{{"created": tarlayer.Epoch.Format("2006-01-02T15:04:05Z"), "created_by": "tests/images"}},
	}
}

// layout returns the blobs and the index.json of an OCI layout holding img.
func layout(img image) (blobs, []byte, error) {
	b := blobs{}
	layer := b.add(mediaLayer, img.layer)
	cfg, err := b.addJSON(mediaConfig, imageConfig(img, layer))
	if err != nil {
		return nil, nil, err
	}
	man, err := b.addJSON(mediaManifest, map[string]any{
		"schemaVersion": 2, "mediaType": mediaManifest, "config": cfg, "layers": []descriptor{layer},
	})
	if err != nil {
		return nil, nil, err
	}
	man.Platform = &platform{Architecture: "amd64", OS: "linux"}
	man.Annotations = map[string]string{
		"io.containerd.image.name":          img.name,
		"org.opencontainers.image.ref.name": img.tag,
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": mediaIndex, "manifests": []descriptor{man},
	})
	return b, index, err
}

// writeArchive writes img as a tar of an OCI layout to path.
func writeArchive(path string, img image) error {
	b, index, err := layout(img)
	if err != nil {
		return err
	}
	files := []tarlayer.Entry{
		tarlayer.File("oci-layout", 0o644, []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		tarlayer.File("index.json", 0o644, index),
		tarlayer.Dir("blobs", 0o755),
		tarlayer.Dir("blobs/sha256", 0o755),
	}
	digests := make([]string, 0, len(b))
	for d := range b {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		files = append(files, tarlayer.File("blobs/sha256/"+d[len("sha256:"):], 0o644, b[d]))
	}
	return writeTar(path, files)
}

func writeTar(path string, files []tarlayer.Entry) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tarlayer.Write(f, files); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
