package exitmon

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// journalBound is what a journal may weigh with a handful of live execs:
// the dead bytes allowed before a rewrite, the live records, and the one
// record that tips it over.
const journalBound = 2*compactMin + 1024

// TestJournalBoundedByLiveExecs: a long run of exec lifecycles (exit, then
// delete) leaves a journal of a few KiB that replays to exactly the init
// exit and the execs not yet deleted.
func TestJournalBoundedByLiveExecs(t *testing.T) {
	cycles := 100_000
	if testing.Short() {
		cycles = 20_000
	}
	if n, err := strconv.Atoi(os.Getenv("WATCH_JOURNAL_CYCLES")); err == nil {
		cycles = n
	}
	dir := t.TempDir()
	path := filepath.Join(dir, JournalName)
	j, err := createJournal(dir, Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "pod"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	at := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	live := map[string]Status{}
	for _, id := range []string{"stuck1", "stuck2", "stuck3"} { // exited, never deleted
		live[id] = Status{Pid: 7, Code: 3, ExitedAt: at}
		mustExit(t, j, id, live[id])
	}
	var biggest int64
	for i := range cycles {
		id := fmt.Sprintf("probe-%016x", i)
		mustExit(t, j, id, Status{Pid: 1000 + i, ExitedAt: at})
		if err := j.Remove(id); err != nil {
			t.Fatal(err)
		}
		if i == cycles/2 {
			mustExit(t, j, "", Status{Pid: 1, Code: 137, ExitedAt: at, OOM: true})
		}
		if i%997 == 0 {
			biggest = max(biggest, fileSize(t, path))
		}
	}
	size := fileSize(t, path)
	t.Logf("%d exec lifecycles: journal %d bytes, largest seen %d", cycles, size, biggest)
	if biggest > journalBound || size > journalBound {
		t.Fatalf("journal grew to %d bytes (now %d), bound %d", biggest, size, journalBound)
	}
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Init == nil || r.Init.Pid != 1 || r.Init.Code != 137 || !r.Init.OOM {
		t.Fatalf("init exit %+v", r.Init)
	}
	wantExecs(t, r, live)
}

// TestJournalCrashPoints: the journal on disk, read back after every
// operation of a random history (as a crash would leave it), with and
// without a torn last record, replays to exactly the exits reported and
// not yet deleted; and a new shim can open it and go on.
func TestJournalCrashPoints(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, JournalName)
	j, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	live := map[string]Status{}
	var init *Status
	compactions, last := 0, int64(0)
	for op := range 2000 {
		id := fmt.Sprintf("e%d", rng.Intn(40)) // ids are reused after deletion
		switch k := rng.Intn(10); {
		case k < 5:
			st := Status{Pid: op, Code: op % 256, ExitedAt: time.Unix(int64(op), 0).UTC()}
			mustExit(t, j, id, st)
			live[id] = st
		case k < 9:
			if err := j.Remove(id); err != nil {
				t.Fatal(err)
			}
			delete(live, id)
		default:
			st := Status{Pid: op, Code: 137}
			mustExit(t, j, "", st)
			init = &st
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) < last {
			compactions++
		}
		last = int64(len(b))
		for _, torn := range []string{"", `{"exec_id":"e1","exit":{"pid":`, `{"exec_id":"e2","dele`, `{"exit":{"pid":9,"status":1,"exited_at":"2024`} {
			r, err := ReadJournal(dir)
			if torn != "" {
				r, err = readReplay(strings.NewReader(string(b) + torn))
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameStatus(r.Init, init) || r.Identity.ID != "c1" {
				t.Fatalf("op %d, torn %q: init %+v, want %+v", op, torn, r.Init, init)
			}
			wantExecs(t, r, live)
		}
	}
	if compactions < 10 {
		t.Fatalf("only %d compactions in the history", compactions)
	}
	// The shim dies without closing; the next one appends after a torn line.
	appendRaw(t, dir, `{"exec_id":"e1","exit":{"pid":`)
	j2, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	mustExit(t, j2, "", Status{Pid: 99, Code: 1})
	r, err := ReadJournal(dir)
	if err != nil || r.Init == nil || r.Init.Pid != 99 || len(r.execs) != 0 {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	j.Close()
}

// TestJournalCompactFailure: a compaction that fails leaves the journal
// appending to its old file, which replays whole; it is retried later.
func TestJournalCompactFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, JournalName)
	j, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	fails := 0
	rename = func(string, string) error { fails++; return errors.New("injected") }
	defer func() { rename = os.Rename }()
	mustExit(t, j, "keep", Status{Pid: 5, Code: 5})
	for i := range 200 {
		id := fmt.Sprint("p", i)
		mustExit(t, j, id, Status{Pid: i})
		if err := j.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if fails == 0 || fails > 10 {
		t.Fatalf("%d failed compactions, want a few (retried, not on every record)", fails)
	}
	if _, err := os.Stat(filepath.Join(dir, compactName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed compaction left its file: %v", err)
	}
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantExecs(t, r, map[string]Status{"keep": {Pid: 5, Code: 5}})
	grown := fileSize(t, path)
	rename = os.Rename
	for i := range 200 {
		id := fmt.Sprint("q", i)
		mustExit(t, j, id, Status{Pid: i})
		j.Remove(id)
	}
	if size := fileSize(t, path); size >= grown || size > journalBound {
		t.Fatalf("journal %d bytes after compaction resumed (was %d)", size, grown)
	}
	if r, err = ReadJournal(dir); err != nil {
		t.Fatal(err)
	}
	wantExecs(t, r, map[string]Status{"keep": {Pid: 5, Code: 5}})
}

// TestJournalClosed: records after Close are refused, removals ignored.
func TestJournalClosed(t *testing.T) {
	dir := t.TempDir()
	j, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	mustExit(t, j, "e1", Status{Pid: 2})
	j.Close()
	if err := j.Exit("e2", Status{Pid: 3}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Exit after Close = %v", err)
	}
	if err := j.Remove("e1"); err != nil {
		t.Fatalf("Remove after Close = %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantExecs(t, r, map[string]Status{"e1": {Pid: 2}})
}

func mustExit(t testing.TB, j *journal, execID string, st Status) {
	t.Helper()
	if err := j.Exit(execID, st); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func sameStatus(a, b *Status) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Pid == b.Pid && a.Code == b.Code && a.OOM == b.OOM && a.ExitedAt.Equal(b.ExitedAt)
}

func wantExecs(t testing.TB, r *Replay, want map[string]Status) {
	t.Helper()
	if len(r.execs) != len(want) {
		t.Fatalf("replayed %d execs, want %d: %v", len(r.execs), len(want), r.execs)
	}
	for id, st := range want {
		got, ok := r.execs[id]
		if !ok || !sameStatus(&got, &st) {
			t.Fatalf("exec %s replayed as %+v (%v), want %+v", id, got, ok, st)
		}
	}
}

// BenchmarkJournalExecCycle is the journal's share of an exec's
// lifecycle: its exit recorded, then its deletion, compactions included.
func BenchmarkJournalExecCycle(b *testing.B) {
	j, err := createJournal(b.TempDir(), benchIdentity)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	st := Status{Pid: 4242, ExitedAt: time.Now()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("probe-%016x", i)
		mustExit(b, j, id, st)
		if err := j.Remove(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalExit records exits of execs that are never deleted.
func BenchmarkJournalExit(b *testing.B) {
	j, err := createJournal(b.TempDir(), benchIdentity)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	st := Status{Pid: 4242, ExitedAt: time.Now()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		mustExit(b, j, fmt.Sprintf("probe-%016x", i), st)
	}
}

// BenchmarkReadJournal reads the journal of a task after a history of
// exec lifecycles and its init's exit, as `shim delete` does: its cost
// must not depend on the history.
func BenchmarkReadJournal(b *testing.B) {
	for _, n := range []int{0, 1000, 200_000} {
		b.Run(fmt.Sprint("history=", n), func(b *testing.B) {
			dir := b.TempDir()
			j, err := createJournal(dir, benchIdentity)
			if err != nil {
				b.Fatal(err)
			}
			st := Status{Pid: 4242, ExitedAt: time.Now()}
			for i := range n {
				id := fmt.Sprintf("probe-%016x", i)
				mustExit(b, j, id, st)
				j.Remove(id)
			}
			mustExit(b, j, "", st)
			j.Close()
			b.ReportAllocs()
			for b.Loop() {
				if r, err := ReadJournal(dir); err != nil || r.Init == nil {
					b.Fatal(r, err)
				}
			}
			b.ReportMetric(float64(fileSize(b, filepath.Join(dir, JournalName))), "journal-bytes")
		})
	}
}

var benchIdentity = Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}

// TestJournalShortWrite: a record only partly written (the bundle's tmpfs
// full) does not swallow the next one, and is not replayed itself.
func TestJournalShortWrite(t *testing.T) {
	dir := t.TempDir()
	j, err := createJournal(dir, Identity{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	writeFile = func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:len(b)/2])
		return n, errors.New("injected: no space")
	}
	err = j.Exit("torn", Status{Pid: 1})
	writeFile = (*os.File).Write
	if err == nil {
		t.Fatal("short write not reported")
	}
	mustExit(t, j, "next", Status{Pid: 2, Code: 2})
	r, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantExecs(t, r, map[string]Status{"next": {Pid: 2, Code: 2}})
}
