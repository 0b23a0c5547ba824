package exitmon

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// BenchmarkExecLifecycle runs exec lifecycles (added, started, exited,
// deleted) through a domain, with and without the node log, to show what
// the log adds to each: four appends, one of them on the exit path.
func BenchmarkExecLifecycle(b *testing.B) {
	for _, withLog := range []bool{false, true} {
		b.Run("nodelog="+strconv.FormatBool(withLog), func(b *testing.B) {
			m := New(newRecorder())
			if withLog {
				w, err := nodelog.Open(filepath.Join(b.TempDir(), "log"), nodelog.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				m.SetNodeLog(w)
			}
			tk, err := m.NewDomain(b.TempDir(), Identity{ID: "c1", Namespace: "k8s.io", PodName: "p", PodUID: "u"})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				id := "e" + strconv.Itoa(i)
				ex, _ := tk.AddExec(id)
				tk.Publish("/tasks/exec-added", execEv{ExecID: id})
				ex.BeginStart()
				tok := m.Begin()
				ex.Watch(tok, fakePid(100), -1)
				ex.Started("/tasks/exec-started", execEv{ExecID: id})
				m.inject(fakePid(100), 0)
				if _, err := ex.Wait(context.Background()); err != nil {
					b.Fatal(err)
				}
				tk.RemoveExec(id)
			}
		})
	}
}
