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
	j, err := createJournal(dir, id)
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
	if len(r.execs) != 2 || r.execs["e1"].Code != 3 || r.execs["e1"].Pid != 13 || r.execs["e2"].Code != 2 {
		t.Errorf("execs %+v", r.execs)
	}
}

func TestJournalNoInitExit(t *testing.T) {
	dir := t.TempDir()
	j, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Init != nil || len(r.execs) != 0 || r.Identity.ID != "c1" {
		t.Fatalf("replay %+v", r)
	}
}

func TestJournalMissing(t *testing.T) {
	if _, err := ReadJournal(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadJournal of an empty bundle = %v, want not exist", err)
	}
	if _, err := createJournal(filepath.Join(t.TempDir(), "nope"), Identity{ID: "c1"}); err == nil {
		t.Fatal("createJournal in a missing bundle succeeded")
	}
}

// TestJournalTornLastLine: a half-written last record is ignored; what was
// written before it is replayed.
func TestJournalTornLastLine(t *testing.T) {
	dir := t.TempDir()
	j, err := createJournal(dir, Identity{ID: "c1"})
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
	if r.execs["e1"].Code != 4 || r.Identity.ID != "c1" {
		t.Fatalf("replay %+v", r)
	}
}

// TestJournalReopenAppends: createJournal on an existing journal appends
// after what it holds, even when its last line was torn, and starts a new
// history: the earlier task's exits no longer replay.
func TestJournalReopenAppends(t *testing.T) {
	for _, torn := range []bool{false, true} {
		name := "clean"
		if torn {
			name = "torn"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := createJournal(dir, Identity{ID: "old"})
			if err != nil {
				t.Fatal(err)
			}
			j.Exit("", Status{Pid: 10, Code: 7})
			j.Exit("e0", Status{Pid: 12, Code: 3})
			j.Close()
			if torn {
				appendRaw(t, dir, `{"exec_id":"e9","exit":{"pid"`)
			}
			j, err = createJournal(dir, Identity{ID: "new", Sandbox: true})
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
			if r.Init != nil {
				t.Fatalf("the earlier task's init exit replayed for the new one: %+v\n%s", r.Init, b)
			}
			if r.Identity.ID != "new" || !r.Identity.Sandbox {
				t.Fatalf("identity %+v, want the reopened one\n%s", r.Identity, b)
			}
			if len(r.execs) != 1 || r.execs["e1"].Code != 1 {
				t.Fatalf("execs %+v, want only e1\n%s", r.execs, b)
			}
			if n := strings.Count(string(b), "\n"); torn && n != 6 || !torn && n != 5 {
				t.Fatalf("journal has %d lines:\n%s", n, b)
			}
		})
	}
}

// TestReplayNewTaskResets: a task record starts a new history. A task
// re-created with the same id in the same bundle must not inherit the
// earlier task's init exit, which `shim delete` would report for it.
func TestReplayNewTaskResets(t *testing.T) {
	dir := t.TempDir()
	writeRaw(t, dir, `{"task":{"id":"c1","sandbox":false}}
{"exec_id":"e1","exit":{"pid":11,"status":1,"exited_at":"2024-01-02T03:04:05Z"}}
{"exit":{"pid":10,"status":7,"exited_at":"2024-01-02T03:04:06Z"}}
{"task":{"id":"c1","sandbox":false,"pod_uid":"u2"}}
{"exec_id":"e2","exit":{"pid":21,"status":2,"exited_at":"2024-01-02T03:04:07Z"}}
`)
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Init != nil {
		t.Fatalf("init exit of the earlier task replayed: %+v", r.Init)
	}
	if _, ok := r.execs["e1"]; ok || len(r.execs) != 1 || r.execs["e2"].Code != 2 {
		t.Fatalf("execs %+v, want only e2", r.execs)
	}
	if r.Identity.PodUID != "u2" {
		t.Fatalf("identity %+v", r.Identity)
	}
	appendRaw(t, dir, `{"exit":{"pid":20,"status":9,"exited_at":"2024-01-02T03:04:08Z"}}`+"\n")
	if r, err = ReadJournal(dir); err != nil || r.Init == nil || r.Init.Pid != 20 || r.Init.Code != 9 {
		t.Fatalf("new task's init exit: %+v, %v", r, err)
	}
}

func writeRaw(t *testing.T, dir, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, JournalName), []byte(s), 0o600); err != nil {
		t.Fatal(err)
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
	j, err := createJournal(dir, Identity{ID: "burst"})
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
	if len(r.execs) != 200 {
		t.Fatalf("replayed %d exec exits, want 200", len(r.execs))
	}
	for i := 0; i < 200; i++ {
		if st := r.execs[fmt.Sprintf("e%d", i)]; st.Pid != 1000+i || st.Code != i%256 {
			t.Fatalf("e%d replayed as %+v", i, st)
		}
	}
}

// TestJournalLongLines: a record longer than the reader's buffer replays;
// a line longer than any record is skipped, and what follows it replays.
func TestJournalLongLines(t *testing.T) {
	dir := t.TempDir()
	id := Identity{ID: "c1", PodName: strings.Repeat("p", 10_000)}
	j, err := createJournal(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	j.Exit("e1", Status{Pid: 1, Code: 1})
	j.Close()
	appendRaw(t, dir, `{"exec_id":"`+strings.Repeat("x", maxLine)+`","exit":{"pid":2}}`+"\n")
	appendRaw(t, dir, `{"exit":{"pid":3,"status":3}}`+"\n")
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity != id || len(r.execs) != 1 || r.execs["e1"].Code != 1 || r.Init == nil || r.Init.Code != 3 {
		t.Fatalf("replay: %d-byte pod name, execs %d, init %+v", len(r.Identity.PodName), len(r.execs), r.Init)
	}
}
