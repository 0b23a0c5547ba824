package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileDir: each shim gets a directory of its own, owner-only, that
// nobody could have made before it.
func TestProfileDir(t *testing.T) {
	parent := t.TempDir()
	a, err := newProfileDir(parent, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newProfileDir(parent, 42)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || filepath.Dir(a) != parent || !strings.HasPrefix(filepath.Base(a), "watch-prof-42-") {
		t.Fatalf("dirs %s and %s", a, b)
	}
	fi, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: mode %v, want a directory 0700", a, fi.Mode())
	}
}

// TestCreateProfile: a profile is a new owner-only file; a file or a
// symlink already at its name is never written through.
func TestCreateProfile(t *testing.T) {
	dir, victim := t.TempDir(), filepath.Join(t.TempDir(), "victim")
	write(t, victim, "precious")
	if err := os.Symlink(victim, filepath.Join(dir, "cpu-0.pprof")); err != nil {
		t.Fatal(err)
	}
	if f, err := createProfile(dir, "cpu-0.pprof"); err == nil {
		f.Close()
		t.Fatal("created a profile through a symlink")
	}
	write(t, filepath.Join(dir, "cpu-1.pprof"), "old")
	if f, err := createProfile(dir, "cpu-1.pprof"); err == nil {
		f.Close()
		t.Fatal("opened an existing file")
	}
	f, err := createProfile(dir, "cpu-2.pprof")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(f.Name()); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if got := read(t, victim); got != "precious" {
		t.Fatalf("symlink target now %q", got)
	}
}

// TestReplaceProfile: a profile is replaced whole; a symlink at its name is
// replaced, not followed; a failed write leaves the old profile.
func TestReplaceProfile(t *testing.T) {
	dir, victim := t.TempDir(), filepath.Join(t.TempDir(), "victim")
	write(t, victim, "precious")
	for _, name := range []string{"heap.pprof", "heap.pprof.tmp"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, content := range []string{"first", "second"} {
		err := replaceProfile(dir, "heap.pprof", func(w io.Writer) error {
			_, err := io.WriteString(w, content)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := read(t, filepath.Join(dir, "heap.pprof")); got != content {
			t.Fatalf("profile %q, want %q", got, content)
		}
	}
	if got := read(t, victim); got != "precious" {
		t.Fatalf("symlink target now %q", got)
	}
	fi, err := os.Lstat(filepath.Join(dir, "heap.pprof"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile %v, %v; want a regular file 0600", fi.Mode(), err)
	}
	boom := errors.New("boom")
	if err := replaceProfile(dir, "heap.pprof", func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if got := read(t, filepath.Join(dir, "heap.pprof")); got != "second" {
		t.Fatalf("after a failed write: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
