package tarlayer

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

// TestBytes reads back an archive of every kind of entry: order, types,
// names, link targets, modes, content and the fixed time are as given, and
// two writes give the same bytes.
func TestBytes(t *testing.T) {
	entries := []Entry{
		Dir("bin", 0o755),
		File("bin/busybox", 0o755, []byte("elf")),
		Hardlink("bin/sh", 0o755, "bin/busybox"),
		Symlink("bin/ls", "/bin/busybox"),
	}
	data, err := Bytes(entries)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Bytes(entries)
	if !bytes.Equal(data, again) {
		t.Errorf("two writes of the same entries differ")
	}
	want := []struct {
		name, link string
		typ        byte
		mode       int64
		body       string
	}{
		{"bin/", "", tar.TypeDir, 0o755, ""},
		{"bin/busybox", "", tar.TypeReg, 0o755, "elf"},
		{"bin/sh", "bin/busybox", tar.TypeLink, 0o755, ""},
		{"bin/ls", "/bin/busybox", tar.TypeSymlink, 0o777, ""},
	}
	tr := tar.NewReader(bytes.NewReader(data))
	for _, w := range want {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %s: %v", w.name, err)
		}
		body, _ := io.ReadAll(tr)
		if h.Name != w.name || h.Linkname != w.link || h.Typeflag != w.typ || h.Mode != w.mode ||
			string(body) != w.body || !h.ModTime.Equal(Epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("entry %+v with body %q, want %+v", h, body, w)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the last entry: %v, want EOF", err)
	}
}
