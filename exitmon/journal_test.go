package exitmon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	id := Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "pod1", PodName: "web", PodNamespace: "default", PodUID: "u1"}
	j, err := CreateJournal(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, e := range []struct {
		exec string
		st   Status
	}{
		{"e1", Status{Pid: 11, Code: 1, ExitedAt: at}},
		{"e2", Status{Pid: 12, Code: 2, ExitedAt: at}},
		{"e1", Status{Pid: 13, Code: 3, ExitedAt: at}}, // a reused exec id: last wins
		{"", Status{Pid: 10, Code: 137, ExitedAt: at, OOM: true}},
	} {
		if err := j.Exit(e.exec, e.st); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", fi.Mode().Perm())
	}
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity != id {
		t.Errorf("identity %+v, want %+v", r.Identity, id)
	}
	if r.Init == nil || r.Init.Pid != 10 || r.Init.Code != 137 || !r.Init.OOM || !r.Init.ExitedAt.Equal(at) {
		t.Errorf("init %+v", r.Init)
	}
	if len(r.Execs) != 2 || r.Execs["e1"].Code != 3 || r.Execs["e1"].Pid != 13 || r.Execs["e2"].Code != 2 {
		t.Errorf("execs %+v", r.Execs)
	}
}

func TestJournalNoInitExit(t *testing.T) {
	dir := t.TempDir()
	j, err := CreateJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Init != nil || len(r.Execs) != 0 || r.Identity.ID != "c1" {
		t.Fatalf("replay %+v", r)
	}
}

func TestJournalMissing(t *testing.T) {
	if _, err := ReadJournal(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadJournal of an empty bundle = %v, want not exist", err)
	}
	if _, err := CreateJournal(filepath.Join(t.TempDir(), "nope"), Identity{ID: "c1"}); err == nil {
		t.Fatal("CreateJournal in a missing bundle succeeded")
	}
}

// TestJournalTornLastLine: a half-written last record is ignored; what was
// written before it is replayed.
func TestJournalTornLastLine(t *testing.T) {
	dir := t.TempDir()
	j, err := CreateJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Exit("e1", Status{Pid: 11, Code: 4}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	appendRaw(t, dir, `{"exit":{"pid":10,"status":`)
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Init != nil {
		t.Fatalf("torn init exit replayed: %+v", r.Init)
	}
	if r.Execs["e1"].Code != 4 || r.Identity.ID != "c1" {
		t.Fatalf("replay %+v", r)
	}
}

// TestJournalReopenAppends: CreateJournal on an existing journal keeps what
// it holds, even when its last line was torn.
func TestJournalReopenAppends(t *testing.T) {
	for _, torn := range []bool{false, true} {
		name := "clean"
		if torn {
			name = "torn"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := CreateJournal(dir, Identity{ID: "old"})
			if err != nil {
				t.Fatal(err)
			}
			j.Exit("", Status{Pid: 10, Code: 7})
			j.Close()
			if torn {
				appendRaw(t, dir, `{"exec_id":"e9","exit":{"pid"`)
			}
			j, err = CreateJournal(dir, Identity{ID: "new", Sandbox: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Exit("e1", Status{Pid: 11, Code: 1}); err != nil {
				t.Fatal(err)
			}
			j.Close()
			b, _ := os.ReadFile(filepath.Join(dir, JournalName))
			r, err := ReadJournal(dir)
			if err != nil {
				t.Fatal(err)
			}
			if r.Init == nil || r.Init.Code != 7 {
				t.Fatalf("earlier init exit lost on reopen: %+v\n%s", r.Init, b)
			}
			if r.Identity.ID != "new" || !r.Identity.Sandbox {
				t.Fatalf("identity %+v, want the reopened one\n%s", r.Identity, b)
			}
			if r.Execs["e1"].Code != 1 {
				t.Fatalf("exit after reopen lost: %+v\n%s", r.Execs, b)
			}
			if _, ok := r.Execs["e9"]; ok {
				t.Fatal("torn record replayed")
			}
			if n := strings.Count(string(b), "\n"); torn && n != 5 || !torn && n != 4 {
				t.Fatalf("journal has %d lines:\n%s", n, b)
			}
		})
	}
}

func appendRaw(t *testing.T, dir, s string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, JournalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestJournalConcurrentExits: 200 exits appended at once
// are all replayed, each intact.
func TestJournalConcurrentExits(t *testing.T) {
	dir := t.TempDir()
	j, err := CreateJournal(dir, Identity{ID: "burst"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.Exit(fmt.Sprintf("e%d", i), Status{Pid: 1000 + i, Code: i % 256}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	j.Close()
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Execs) != 200 {
		t.Fatalf("replayed %d exec exits, want 200", len(r.Execs))
	}
	for i := 0; i < 200; i++ {
		if st := r.Execs[fmt.Sprintf("e%d", i)]; st.Pid != 1000+i || st.Code != i%256 {
			t.Fatalf("e%d replayed as %+v", i, st)
		}
	}
}
