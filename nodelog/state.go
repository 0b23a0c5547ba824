package nodelog

import (
	"cmp"
	"encoding/json"
	"slices"
)

// State is what a log says is alive: the latest record of every task and
// exec not deleted, merged with what earlier records of it told (pid,
// namespaces, image...).
type State struct {
	items map[Key]*Record
	// Rev is the revision of the last record applied.
	Rev uint64
}

func newState() *State { return &State{items: map[Key]*Record{}} }

// apply adds one record (a snapshot copy or a new record) to the state.
func (s *State) apply(r *Record) {
	s.Rev = max(s.Rev, r.Rev)
	k := r.Key()
	if r.Event == EventDeleted {
		delete(s.items, k)
		if k.ExecID == "" {
			for ek := range s.items {
				if ek.Namespace == k.Namespace && ek.ContainerID == k.ContainerID {
					delete(s.items, ek)
				}
			}
		}
		return
	}
	n := *r
	n.Snapshot = false
	if old, ok := s.items[k]; ok && r.Event != EventCreated && r.Event != EventExecAdded {
		merge(&n, old)
	}
	s.items[k] = &n
}

// merge fills what r leaves empty from old, an earlier record of the same
// task or exec.
func merge(r, old *Record) {
	fill(&r.SandboxID, old.SandboxID)
	fill(&r.PodName, old.PodName)
	fill(&r.PodNamespace, old.PodNamespace)
	fill(&r.PodUID, old.PodUID)
	fill(&r.ContainerName, old.ContainerName)
	fill(&r.Image, old.Image)
	fill(&r.Pid, old.Pid)
	fill(&r.PidNS, old.PidNS)
	fill(&r.MntNS, old.MntNS)
	if r.ExitStatus == nil {
		r.ExitStatus, r.ExitedAt, r.Signal = old.ExitStatus, old.ExitedAt, old.Signal
	}
	r.OOM = r.OOM || old.OOM
}

func fill[T comparable](dst *T, v T) {
	var zero T
	if *dst == zero {
		*dst = v
	}
}

// Get returns the latest record of k, if k is alive.
func (s *State) Get(k Key) (Record, bool) {
	r, ok := s.items[k]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// Records returns the state's records in revision order.
func (s *State) Records() []Record {
	out := make([]Record, 0, len(s.items))
	for _, r := range s.items {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.Rev, b.Rev) })
	return out
}

// snapshot encodes the state as a segment's snapshot lines.
func (s *State) snapshot() ([]byte, error) {
	var buf []byte
	for _, r := range s.Records() {
		r.Snapshot = true
		b, err := json.Marshal(&r)
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, b...), '\n')
	}
	return buf, nil
}
