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

// TestStopReportsLoggedExit: `shim delete` reports the init exit the node
// log holds for the task (its shim wrote it as it was reaped), and 137 with
// the recorded pid when the log holds none for it: not the exit of an
// earlier task re-created under the same id, another task's or an exec's.
// It then records the deletion, once.
func TestStopReportsLoggedExit(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	exited := func(ctr, exec string, code uint32) *nodelog.Record {
		kind := nodelog.KindContainer
		if exec != "" {
			kind = nodelog.KindExec
		}
		return &nodelog.Record{Event: nodelog.EventExited, Kind: kind, Namespace: "default", ContainerID: ctr, ExecID: exec, Pid: 10, ExitStatus: &code, ExitedAt: &at}
	}
	created := &nodelog.Record{Event: nodelog.EventCreated, Kind: nodelog.KindContainer, Namespace: "default", ContainerID: "c1", PodName: "web"}
	for _, tc := range []struct {
		name string
		log  []*nodelog.Record
		want exitmon.Status
	}{
		{"logged", []*nodelog.Record{created, exited("c1", "", 3)}, exitmon.Status{Pid: 10, Code: 3, ExitedAt: at}},
		{"re-created", []*nodelog.Record{created, exited("c1", "", 3), created}, exitmon.Status{Pid: 4242, Code: 137}},
		{"other task", []*nodelog.Record{created, exited("c2", "", 3)}, exitmon.Status{Pid: 4242, Code: 137}},
		{"exec only", []*nodelog.Record{created, exited("c1", "e1", 3)}, exitmon.Status{Pid: 4242, Code: 137}},
		{"no exit", []*nodelog.Record{created}, exitmon.Status{Pid: 4242, Code: 137}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logDir := filepath.Join(t.TempDir(), "log")
			t.Setenv(nodelog.DirEnv, logDir)
			last := appendLog(t, logDir, tc.log...)
			bundle := t.TempDir()
			write(t, bundle, "watch-runc.json", `{"binary":"/bin/true"}`)
			write(t, bundle, "init.pid", "4242")
			st, err := (&Manager{}).Stop(context.Background(), flags{id: "c1", namespace: "default", bundle: bundle})
			if err != nil {
				t.Fatal(err)
			}
			if st.Pid != tc.want.Pid || st.Code != tc.want.Code || !tc.want.ExitedAt.IsZero() && !st.ExitedAt.Equal(tc.want.ExitedAt) {
				t.Fatalf("Stop = %+v, want %+v", st, tc.want)
			}
			checkDeletedRecord(t, logDir, last, st)
			// containerd runs delete again after a shim that deleted the
			// task exited: no second deletion.
			(&Manager{}).Stop(context.Background(), flags{id: "c1", namespace: "default", bundle: bundle})
			checkDeletedRecord(t, logDir, last, st)
		})
	}
}

func write(t *testing.T, dir, name, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// appendLog writes recs to the log in dir, as a shim did, and returns the
// last one's revision.
func appendLog(t *testing.T, dir string, recs ...*nodelog.Record) uint64 {
	t.Helper()
	w, err := nodelog.Open(dir, nodelog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var rev uint64
	for _, r := range recs {
		c := *r
		if rev, err = w.Append(&c); err != nil {
			t.Fatal(err)
		}
	}
	return rev
}

// checkDeletedRecord checks that the node log in dir holds, after the
// revision created, one record: its deletion with the exit status Stop reported.
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
	if got == nil || got.Event != nodelog.EventDeleted || got.ContainerID != "c1" || got.ExitStatus == nil || int(*got.ExitStatus) != st.Code || got.PodName != "web" {
		t.Fatalf("node log after shim delete: %+v, want c1 deleted with status %d", got, st.Code)
	}
}
