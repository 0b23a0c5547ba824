// Package tarlayer writes the deterministic tar archives of the test
// images: the layers of tests/images and tests/critest and the OCI layout
// archives of tests/images. Every entry is owned by root and dated Epoch,
// in PAX format, so that the same entries always give the same bytes.
//
// It has no build tag and only the standard library, so that the image
// builders (a plain command and the separate critest module) can import it.
package tarlayer

import (
	"archive/tar"
	"bytes"
	"io"
	"time"
)

// Epoch is the modification time of every entry.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Entry is one directory, regular file, symlink or hardlink of an archive.
type Entry struct {
	Name     string // path inside the archive, without leading or trailing slash
	Mode     int64
	Data     []byte // content of a regular file
	Symlink  string // target of a symlink
	Hardlink string // archive path of an earlier entry this one links to
	Dir      bool
}

// Dir returns a directory entry.
func Dir(name string, mode int64) Entry { return Entry{Name: name, Mode: mode, Dir: true} }

// File returns a regular file entry.
func File(name string, mode int64, data []byte) Entry {
	return Entry{Name: name, Mode: mode, Data: data}
}

// Symlink returns a symlink entry (mode 0777, as symlinks have).
func Symlink(name, target string) Entry { return Entry{Name: name, Mode: 0o777, Symlink: target} }

// Hardlink returns a hardlink entry to the earlier entry target.
func Hardlink(name string, mode int64, target string) Entry {
	return Entry{Name: name, Mode: mode, Hardlink: target}
}

// Write writes entries to w as an uncompressed tar, in the order given
// (a hardlink's target must come before it).
func Write(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(header(e)); err != nil {
			return err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Bytes returns entries as an uncompressed tar, in the order given.
func Bytes(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	if err := Write(&buf, entries); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func header(e Entry) *tar.Header {
	h := &tar.Header{Name: e.Name, Mode: e.Mode, ModTime: Epoch, Format: tar.FormatPAX}
	switch {
	case e.Dir:
		h.Typeflag, h.Name = tar.TypeDir, e.Name+"/"
	case e.Symlink != "":
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Symlink
	case e.Hardlink != "":
		h.Typeflag, h.Linkname = tar.TypeLink, e.Hardlink
	default:
		h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Data))
	}
	return h
}
