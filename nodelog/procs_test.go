package nodelog

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// childEnv makes the test binary a writer process: "DIR,NAME,COUNT".
const childEnv = "NODELOG_TEST_WRITER"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runWriter(v))
	}
	os.Exit(m.Run())
}

// runWriter appends COUNT records (container NAME, exec ids 0...) to the
// log in DIR; COUNT 0 appends until killed.
func runWriter(arg string) int {
	parts := strings.Split(arg, ",")
	n, _ := strconv.Atoi(parts[2])
	w, err := Open(parts[0], Options{SegmentSize: 1024})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; n == 0 || i < n; i++ {
		if _, err := w.Append(&Record{Event: EventExecAdded, Kind: KindExec, Namespace: "ns", ContainerID: parts[1], ExecID: strconv.Itoa(i)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	w.Close()
	return 0
}

// TestConcurrentProcesses has several processes append to one log (one of
// them SIGKILLed while appending) while rotations happen, and a reader
// follow from the start: it must see every revision exactly once, in
// order, and each process's records in the order it wrote them.
func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, dir, Options{SegmentSize: 1024})
	r := readerT(t, dir)
	const writers, each = 4, 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []Record
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(ctx, Cursor{Log: w.LogID()}, func(rec *Record) error {
			mu.Lock()
			got = append(got, *rec)
			mu.Unlock()
			return nil
		})
	}()
	var cmds []*exec.Cmd
	start := func(name string, n int) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", childEnv, dir, name, n))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	waitRev := func(rev uint64) {
		for end := time.Now().Add(10 * time.Second); w.h.read().next < rev && time.Now().Before(end); {
			time.Sleep(100 * time.Microsecond)
		}
	}
	// The endless writer starts first and is SIGKILLed while all append.
	start("victim", 0)
	waitRev(100)
	for i := range writers {
		start(fmt.Sprint("w", i), each)
	}
	waitRev(700)
	victim := cmds[0]
	victim.Process.Kill()
	victim.Wait()
	cmds = cmds[1:]
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	last := appendT(t, w, EventCreated, "end", "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= int(last) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	checkExactlyOnce(t, got, last, writers, each)
	if firsts, _ := segments(dir); len(firsts) < 3 {
		t.Fatalf("segments %v: the test wants rotations", firsts)
	}
	t.Logf("%d records from %d processes, %d segments", last, writers+1, len(mustSegments(dir)))
}

func mustSegments(dir string) []uint64 { s, _ := segments(dir); return s }

func checkExactlyOnce(t *testing.T, got []Record, last uint64, writers, each int) {
	t.Helper()
	if uint64(len(got)) != last {
		t.Fatalf("reader got %d records, the log has %d", len(got), last)
	}
	next := map[string]int{}
	for i, rec := range got {
		if rec.Rev != uint64(i+1) {
			t.Fatalf("record %d has revision %d", i, rec.Rev)
		}
		if rec.ContainerID == "end" {
			continue
		}
		if seq, _ := strconv.Atoi(rec.ExecID); seq != next[rec.ContainerID] {
			t.Fatalf("%s: record %d after %d", rec.ContainerID, seq, next[rec.ContainerID]-1)
		}
		next[rec.ContainerID]++
	}
	for i := range writers {
		if n := next[fmt.Sprint("w", i)]; n != each {
			t.Fatalf("writer %d: %d records, want %d", i, n, each)
		}
	}
}
