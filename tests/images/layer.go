package main

import (
	"archive/tar"
	"bytes"
	"sort"
	"time"
)

// epoch is the fixed modification time of every file in every archive.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is one file, directory or symlink of a layer.
type entry struct {
	name     string
	mode     int64
	data     []byte
	linkname string
	dir      bool
}

func dirEntry(name string, mode int64) entry { return entry{name: name, mode: mode, dir: true} }

func fileEntry(name string, mode int64, data []byte) entry {
	return entry{name: name, mode: mode, data: data}
}

func linkEntry(name, target string) entry { return entry{name: name, mode: 0o777, linkname: target} }

// buildLayer returns an uncompressed tar of entries sorted by name.
func buildLayer(entries []entry) ([]byte, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(header(e)); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func header(e entry) *tar.Header {
	h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
	switch {
	case e.dir:
		h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
	case e.linkname != "":
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.linkname
	default:
		h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
	}
	return h
}
