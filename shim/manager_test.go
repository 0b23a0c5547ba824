package shim

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// TestGroupOf: our group annotation wins over the CRI sandbox id, which
// wins over the container's own id.
func TestGroupOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"own id", nil, "c1"},
		{"pod", map[string]string{"io.kubernetes.cri.sandbox-id": "pod1"}, "pod1"},
		{"explicit", map[string]string{GroupAnnotation: "web", "io.kubernetes.cri.sandbox-id": "pod1"}, "web"},
		{"empty annotation", map[string]string{GroupAnnotation: ""}, "c1"},
	} {
		if got := groupOf("c1", tc.ann); got != tc.want {
			t.Errorf("%s: groupOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestStopReportsJournaledExit: `shim delete` reports the init exit the
// journal holds for the task, and 137 with the recorded pid when the
// journal holds none for it: not the exit of an earlier task re-created
// in the same bundle, nor another task's.
func TestStopReportsJournaledExit(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	const exitLine = `{"exit":{"pid":10,"status":3,"exited_at":"2024-01-02T03:04:05Z"}}` + "\n"
	for _, tc := range []struct {
		name, journal string
		want          exitmon.Status
	}{
		{"journaled", `{"task":{"id":"c1"}}` + "\n" + exitLine, exitmon.Status{Pid: 10, Code: 3, ExitedAt: at}},
		{"re-created", `{"task":{"id":"c1"}}` + "\n" + exitLine + `{"task":{"id":"c1"}}` + "\n", exitmon.Status{Pid: 4242, Code: 137}},
		{"other task", `{"task":{"id":"c2"}}` + "\n" + exitLine, exitmon.Status{Pid: 4242, Code: 137}},
		{"no journal", "", exitmon.Status{Pid: 4242, Code: 137}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logDir := filepath.Join(t.TempDir(), "log")
			t.Setenv(nodelog.DirEnv, logDir)
			created := createdInLog(t, logDir)
			bundle := t.TempDir()
			write(t, bundle, "watch-runc.json", `{"binary":"/bin/true"}`)
			write(t, bundle, "init.pid", "4242")
			if tc.journal != "" {
				write(t, bundle, exitmon.JournalName, tc.journal)
			}
			st, err := (&Manager{}).Stop(context.Background(), flags{id: "c1", namespace: "default", bundle: bundle})
			if err != nil {
				t.Fatal(err)
			}
			if st.Pid != tc.want.Pid || st.Code != tc.want.Code || !tc.want.ExitedAt.IsZero() && !st.ExitedAt.Equal(tc.want.ExitedAt) {
				t.Fatalf("Stop = %+v, want %+v", st, tc.want)
			}
			checkDeletedRecord(t, logDir, created, st)
			// containerd runs delete again after a shim that deleted the
			// task exited: no second deletion.
			(&Manager{}).Stop(context.Background(), flags{id: "c1", namespace: "default", bundle: bundle})
			checkDeletedRecord(t, logDir, created, st)
		})
	}
}

func write(t *testing.T, dir, name, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// createdInLog writes c1's creation to the log in dir, as its shim did.
func createdInLog(t *testing.T, dir string) uint64 {
	t.Helper()
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rev, err := w.Append(&nodelog.Record{Event: nodelog.EventCreated, Kind: nodelog.KindContainer, Namespace: "default", ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// checkDeletedRecord checks that the node log in dir holds, after c1's
// creation, one record: its deletion with the exit status Stop reported.
func checkDeletedRecord(t *testing.T, dir string, created uint64, st exitmon.Status) {
	t.Helper()
	r, err := nodelog.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got *nodelog.Record
	r.Follow(ctx, nodelog.Cursor{Log: r.LogID(), Rev: created}, func(rec *nodelog.Record) error {
		got = rec
		cancel()
		return nil
	})
	if _, cur, _ := r.List(); cur.Rev != created+1 {
		t.Fatalf("node log after shim delete: at revision %d, want one deletion after %d", cur.Rev, created)
	}
	if got == nil || got.Event != nodelog.EventDeleted || got.ContainerID != "c1" || got.ExitStatus == nil || int(*got.ExitStatus) != st.Code {
		t.Fatalf("node log after shim delete: %+v, want c1 deleted with status %d", got, st.Code)
	}
}
