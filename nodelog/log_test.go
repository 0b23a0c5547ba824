package nodelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func openT(t *testing.T, dir string, opts Options) *Writer {
	t.Helper()
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func readerT(t *testing.T, dir string) *Reader {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Poll = time.Millisecond
	t.Cleanup(func() { r.Close() })
	return r
}

func appendT(t *testing.T, w *Writer, ev, ctr, exec string) uint64 {
	t.Helper()
	kind := KindContainer
	if exec != "" {
		kind = KindExec
	}
	rev, err := w.Append(&Record{Event: ev, Kind: kind, Namespace: "k8s.io", ContainerID: ctr, ExecID: exec, Pid: 42})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// collect follows r from c until it has n records or a second passes.
func collect(t *testing.T, r *Reader, c Cursor, n int) ([]Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Record
	errDone := errors.New("done")
	err := r.Follow(ctx, c, func(rec *Record) error {
		got = append(got, *rec)
		if len(got) == n {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return got, err
}

func revs(rs []Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Rev)
	}
	return out
}

func TestAppendListFollow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w := openT(t, dir, Options{})
	for i, ev := range []string{EventCreated, EventStarted, EventExecAdded, EventExecStarted, EventExited, EventDeleted} {
		exec := ""
		if ev == EventExecAdded || ev == EventExecStarted || ev == EventExited {
			exec = "e1"
		}
		if rev := appendT(t, w, ev, "c1", exec); rev != uint64(i+1) {
			t.Fatalf("revision %d, want %d", rev, i+1)
		}
	}
	appendT(t, w, EventCreated, "c2", "")
	r := readerT(t, dir)
	st, cur, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if recs := st.Records(); len(recs) != 1 || recs[0].ContainerID != "c2" || cur.Rev != 7 {
		t.Fatalf("list: %+v at %s, want c2 alone at 7", recs, cur)
	}
	got, err := collect(t, r, Cursor{Log: r.LogID(), Rev: 3}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(revs(got)) != "[4 5 6 7]" {
		t.Fatalf("follow from 3: %v", revs(got))
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("log directory mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestFollowWaitsForNewRecords(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	r := readerT(t, dir)
	go func() {
		for i := range 20 {
			time.Sleep(time.Millisecond)
			appendT(t, w, EventCreated, fmt.Sprint("c", i), "")
		}
	}()
	got, err := collect(t, r, Cursor{Log: r.LogID()}, 20)
	if err != nil || len(got) != 20 || got[19].Rev != 20 {
		t.Fatalf("got %v, %v", revs(got), err)
	}
}

// TestRotateSnapshot fills several segments with tasks, some deleted, and
// checks that a new segment starts with exactly the live ones and that a
// follower crosses segments without a gap or a duplicate.
func TestRotateSnapshot(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 2048})
	w.rotated = make(chan struct{}, 100)
	r := readerT(t, dir)
	live := map[string]bool{}
	var n uint64
	for i := range 60 {
		id := fmt.Sprint("c", i)
		n = appendT(t, w, EventCreated, id, "")
		live[id] = true
		if i%3 == 0 {
			n = appendT(t, w, EventDeleted, id, "")
			delete(live, id)
		}
		waitRotations(w)
	}
	firsts, _ := segments(dir)
	if len(firsts) < 3 {
		t.Fatalf("segments %v: want rotations", firsts)
	}
	st, cur, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Rev != n {
		t.Fatalf("list cursor %d, want %d", cur.Rev, n)
	}
	listed := map[string]bool{}
	for _, rec := range st.Records() {
		listed[rec.ContainerID] = true
		if rec.Pid != 42 {
			t.Fatalf("listed %+v lost its pid", rec)
		}
	}
	if fmt.Sprint(listed) != fmt.Sprint(live) {
		t.Fatalf("listed %v, live %v", listed, live)
	}
	got, err := collect(t, r, Cursor{Log: r.LogID()}, int(n))
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range got {
		if rec.Rev != uint64(i+1) || rec.Snapshot {
			t.Fatalf("record %d: rev %d snapshot %v", i, rec.Rev, rec.Snapshot)
		}
	}
}

func waitRotations(w *Writer) {
	for w.rotating.Load() {
		<-w.rotated
	}
	for len(w.rotated) > 0 {
		<-w.rotated
	}
}

func TestRetentionExpired(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 512, Retention: time.Nanosecond})
	w.rotated = make(chan struct{}, 100)
	r := readerT(t, dir)
	early, _, _ := r.List()
	for i := range 40 {
		appendT(t, w, EventCreated, fmt.Sprint("c", i), "")
		waitRotations(w)
	}
	firsts, _ := segments(dir)
	if len(firsts) != 1 || firsts[0] == 1 {
		t.Fatalf("segments %v: want only the newest", firsts)
	}
	_, err := collect(t, r, Cursor{Log: r.LogID(), Rev: early.Rev}, 1)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("old cursor: %v, want ErrExpired", err)
	}
	st, cur, err := r.List()
	if err != nil || len(st.Records()) != 40 {
		t.Fatalf("list after retention: %d records, %v", len(st.Records()), err)
	}
	appendT(t, w, EventStarted, "c1", "")
	if got, err := collect(t, r, cur, 1); err != nil || got[0].Rev != cur.Rev+1 {
		t.Fatalf("follow from the list: %v %v", revs(got), err)
	}
}

func TestBadCursors(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	appendT(t, w, EventCreated, "c1", "")
	r := readerT(t, dir)
	for _, s := range []string{"", "x", "12.3", r.LogID(), r.LogID() + ".", r.LogID() + ".-1", r.LogID() + ".01", strings.ToUpper(r.LogID()) + ".1", r.LogID() + ".1.2"} {
		if _, err := ParseCursor(s); !errors.Is(err, ErrInvalidCursor) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseCursor(%q): %v, want ErrInvalidCursor", s, err)
		}
	}
	c, err := ParseCursor(Cursor{Log: r.LogID(), Rev: 1}.String())
	if err != nil || c.Rev != 1 {
		t.Fatalf("round trip: %v %v", c, err)
	}
	other := Cursor{Log: strings.Repeat("0", 32), Rev: 0}
	future := Cursor{Log: r.LogID(), Rev: 2}
	for _, c := range []Cursor{other, future} {
		if _, err := collect(t, r, c, 1); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("follow %s: %v, want ErrInvalidCursor", c, err)
		}
	}
}

// TestWriterDiedMidWrite leaves a segment as a writer that died while
// writing leaves it (flag set, part of a record past the committed end):
// readers never see the part, and the next append replaces it.
func TestWriterDiedMidWrite(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	appendT(t, w, EventCreated, "c1", "")
	p := w.h.read()
	seg := segmentPath(dir, p.seg)
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"rev":2,"event":"created","kind":"container","namespace":"k8s.io","container_id":"ghost"}` + "\n" + `{"rev":3,"ev`)
	f.Close()
	w.h.store(offWriting, 1)
	r := readerT(t, dir)
	if st, cur, _ := r.List(); cur.Rev != 1 || len(st.Records()) != 1 {
		t.Fatalf("reader saw uncommitted bytes: %s %+v", cur, st.Records())
	}
	appendT(t, w, EventStarted, "c1", "")
	got, err := collect(t, r, Cursor{Log: r.LogID()}, 2)
	if err != nil || fmt.Sprint(revs(got)) != "[1 2]" || got[1].ContainerID != "c1" || got[1].Event != EventStarted {
		t.Fatalf("after repair: %+v %v", got, err)
	}
	b, _ := os.ReadFile(seg)
	if strings.Contains(string(b), "ghost") || w.h.load(offWriting) != 0 {
		t.Fatalf("segment not repaired:\n%s", b)
	}
}

// TestUnparseableLineSkipped puts a committed line that does not parse in
// the log: readers skip and count it.
func TestUnparseableLineSkipped(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	appendT(t, w, EventCreated, "c1", "")
	p := w.h.read()
	junk := "{not json\n"
	f, _ := os.OpenFile(segmentPath(dir, p.seg), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(junk)
	f.Close()
	p.size += uint64(len(junk))
	w.h.set(p)
	appendT(t, w, EventStarted, "c1", "")
	r := readerT(t, dir)
	got, err := collect(t, r, Cursor{Log: r.LogID()}, 2)
	if err != nil || fmt.Sprint(revs(got)) != "[1 2]" || r.Skipped() != 1 {
		t.Fatalf("got %v, %v, skipped %d", revs(got), err, r.Skipped())
	}
}

// TestFailedWriteLeavesNothing makes a write stop short with ENOSPC: Append
// fails, the log holds nothing of the record, and the next append works.
func TestFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	appendT(t, w, EventCreated, "c1", "")
	writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		n, _ := f.WriteAt(b[:len(b)/2], off)
		return n, syscall.ENOSPC
	}
	_, err := w.Append(&Record{Event: EventStarted, Kind: KindContainer, ContainerID: "c1"})
	writeAt = (*os.File).WriteAt
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	appendT(t, w, EventExited, "c1", "")
	r := readerT(t, dir)
	got, err := collect(t, r, Cursor{Log: r.LogID()}, 2)
	if err != nil || fmt.Sprint(revs(got)) != "[1 2]" || got[1].Event != EventExited || r.Skipped() != 0 {
		t.Fatalf("got %+v, %v, skipped %d", got, err, r.Skipped())
	}
}

// TestAppendBatch appends records in one call: they get consecutive
// revisions, in order, and a failed write leaves none of them.
func TestAppendBatch(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{})
	appendT(t, w, EventCreated, "c1", "")
	writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		n, _ := f.WriteAt(b[:len(b)-1], off)
		return n, syscall.ENOSPC
	}
	_, err := w.Append(&Record{Event: EventStarted, Kind: KindContainer, ContainerID: "c1"}, &Record{Event: EventExited, Kind: KindContainer, ContainerID: "c1"})
	writeAt = (*os.File).WriteAt
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("batch on a full disk: %v", err)
	}
	a := &Record{Event: EventStarted, Kind: KindContainer, ContainerID: "c1"}
	b := &Record{Event: EventExited, Kind: KindContainer, ContainerID: "c1"}
	last, err := w.Append(a, b)
	if err != nil || a.Rev != 2 || b.Rev != 3 || last != 3 {
		t.Fatalf("batch: revs %d %d last %d, %v", a.Rev, b.Rev, last, err)
	}
	r := readerT(t, dir)
	got, err := collect(t, r, Cursor{Log: r.LogID()}, 3)
	if err != nil || fmt.Sprint(revs(got)) != "[1 2 3]" || got[1].Event != EventStarted || got[2].Event != EventExited || r.Skipped() != 0 {
		t.Fatalf("got %+v, %v, skipped %d", got, err, r.Skipped())
	}
}

func TestUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(dir, 0o500)
	if _, err := Open(filepath.Join(dir, "log"), Options{}); err == nil {
		t.Fatal("opened a log in an unwritable directory")
	}
}

// BenchmarkAppend is one record's cost: on the writer's path alone
// (segments never fill), and with the rotations it causes (in the
// background, but on the same CPUs).
func BenchmarkAppend(b *testing.B) {
	b.Run("rotation=off", func(b *testing.B) { benchAppend(b, 1<<40) })
	b.Run("rotation=4MiB", func(b *testing.B) { benchAppend(b, 0) })
}

func benchAppend(b *testing.B, segSize int64) {
	w, err := Open(b.TempDir(), Options{SegmentSize: segSize})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	code := uint32(0)
	now := time.Now()
	r := Record{Event: EventExited, Kind: KindExec, Namespace: "k8s.io", SandboxID: strings.Repeat("a", 64), ContainerID: strings.Repeat("b", 64),
		ExecID: strings.Repeat("c", 64), PodName: "web-7d9f8c6b5-x2x9z", PodNamespace: "default", PodUID: "9f1c2d3e-1111-2222-3333-444455556666",
		ContainerName: "web", Image: "docker.io/library/nginx:1.27", Pid: 12345, ExitStatus: &code, ExitedAt: &now}
	b.ReportAllocs()
	for b.Loop() {
		rec := r
		if _, err := w.Append(&rec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOrphanSegmentRemoved leaves a segment as a writer that died in a
// rotation leaves it (created, the head never switched to it): the next
// rotation removes it, so no reader is sent to it.
func TestOrphanSegmentRemoved(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 1024})
	w.rotated = make(chan struct{}, 100)
	appendT(t, w, EventCreated, "c1", "")
	orphan := w.h.read().next
	if _, err := createSegment(dir, w.LogID(), orphan, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		appendT(t, w, EventCreated, fmt.Sprint("c", i), "")
		waitRotations(w)
	}
	if _, err := os.Stat(segmentPath(dir, orphan)); !os.IsNotExist(err) {
		t.Fatalf("orphan segment %d still there (%v): segments %v", orphan, err, mustSegments(dir))
	}
	r := readerT(t, dir)
	got, err := collect(t, r, Cursor{Log: r.LogID(), Rev: orphan}, 3)
	if err != nil || got[0].Rev != orphan+1 {
		t.Fatalf("follow from %d: %v %v", orphan, revs(got), err)
	}
}

// TestFollowerOverrunByRetention: a follower still reading an old segment
// when retention removes the next one gets ErrExpired, not a gap.
func TestFollowerOverrunByRetention(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 512})
	w.rotated = make(chan struct{}, 100)
	r := readerT(t, dir)
	for i := range 40 {
		appendT(t, w, EventCreated, fmt.Sprint("c", i), "")
		waitRotations(w)
	}
	firsts := mustSegments(dir)
	if len(firsts) < 3 {
		t.Fatalf("segments %v", firsts)
	}
	os.Remove(segmentPath(dir, firsts[1])) // as retention would
	_, err := collect(t, r, Cursor{Log: r.LogID()}, 40)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("follow across a removed segment: %v, want ErrExpired", err)
	}
}
