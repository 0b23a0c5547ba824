package exitmon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// codecRecorder is a recorder that can also spill tev events.
type codecRecorder struct{ *recorder }

func (codecRecorder) Encode(ev any) ([]byte, error) {
	v := ev.(tev)
	return json.Marshal([]any{v.task, v.n})
}

func (codecRecorder) Decode(b []byte) (any, error) {
	var v struct {
		Task string
		N    int
	}
	var raw []any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	v.Task, v.N = raw[0].(string), int(raw[1].(float64))
	return tev{v.Task, v.N}, nil
}

// TestOutboxSpillsBeyondMemCap: while containerd is unreachable a queue
// keeps memCap events in memory and the rest in its spill file; once sends
// succeed every event arrives once, in order, and the file is removed.
func TestOutboxSpillsBeyondMemCap(t *testing.T) {
	old := memCap
	memCap = 4
	defer func() { memCap = old }()
	rec := codecRecorder{newRecorder()}
	rec.fail = func(string, any, int) bool { return true }
	ob := newOutbox(rec, 1)
	path := filepath.Join(t.TempDir(), spillName)
	q := ob.newQueue(path)
	const n = 100
	for i := 0; i < n; i++ {
		q.push("/t", tev{"A", i})
	}
	ob.mu.Lock()
	inMem, spilled := len(q.items), q.spill.n
	ob.mu.Unlock()
	if inMem > memCap || spilled != n-inMem {
		t.Fatalf("in memory %d (cap %d), spilled %d, want the rest of %d spilled", inMem, memCap, spilled, n)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("spill file: %v", err)
	}
	if p := ob.pending(); p != n {
		t.Fatalf("pending %d, want %d", p, n)
	}
	rec.setFail(nil)
	got := perTask(rec.waitFor(t, n))
	if !reflect.DeepEqual(got["A"], seq(n)) {
		t.Fatalf("delivered %v, want 0..%d in order", got["A"], n-1)
	}
	ob.waitSent(t, n)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("spill file left after draining: %v", err)
	}
}

// TestSpillKeepsFreeFlag: an exec exit spilled to the bundle comes back
// still free, and a barrier still a barrier.
func TestSpillKeepsFreeFlag(t *testing.T) {
	s := &spill{path: filepath.Join(t.TempDir(), spillName), codec: codecRecorder{newRecorder()}}
	for i, free := range []bool{true, false, true} {
		if err := s.put(item{topic: "/t", event: tev{"A", i}, free: free}); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{true, false, true} {
		it, err := s.take()
		if err != nil {
			t.Fatal(err)
		}
		if it.free != want || it.event.(tev).n != i {
			t.Fatalf("event %d came back as %+v, want free=%v", i, it, want)
		}
	}
	s.reset()
}
