package exitmon

import (
	"bytes"
	"testing"
)

// FuzzReadJournal: no input makes the journal parser panic, and whatever
// it replays, encoded again as the journal appends it and as a compaction
// lays it out, replays the same.
func FuzzReadJournal(f *testing.F) {
	for _, seed := range []string{
		"",
		"{\"task\":{\"id\":\"c1\",\"sandbox\":true,\"pod_uid\":\"u\"}}\n",
		"{\"task\":{\"id\":\"c1\",\"sandbox\":false}}\n{\"exec_id\":\"e1\",\"exit\":{\"pid\":11,\"status\":1,\"exited_at\":\"2024-01-02T03:04:05.000000006Z\"}}\n{\"exit\":{\"pid\":10,\"status\":137,\"exited_at\":\"2024-01-02T03:04:05+02:00\",\"oom\":true}}\n",
		"{\"task\":{\"id\":\"c1\"}}\n{\"exec_id\":\"e1\",\"exit\":{\"pid\":11}}\n{\"exec_id\":\"e1\",\"deleted\":true}\n{\"exec_id\":\"e2\",\"exit\":{\"pid\":12,\"status\":2",
		"{\"task\":{\"id\":\"a\"}}\n{\"exit\":{\"pid\":1}}\n{\"task\":{\"id\":\"b\"}}\n",
		"not json\n{}\n[]\nnull\n{\"exit\":null}\n{\"exec_id\":\"\",\"deleted\":true}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readReplay(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("read from memory: %v", err)
		}
		appended, compacted := reencode(t, r)
		for name, b := range map[string][]byte{"appended": appended, "compacted": compacted} {
			got, err := readReplay(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got.Identity != r.Identity || !sameStatus(got.Init, r.Init) {
				t.Fatalf("%s round trip: %+v %+v, want %+v %+v\n%s", name, got.Identity, got.Init, r.Identity, r.Init, b)
			}
			wantExecs(t, got, r.execs)
		}
	})
}

// reencode writes r back as a journal would: every exec's exit twice
// around its deletion, as a reused exec id does; and as a compaction
// would, from the live records alone.
func reencode(t *testing.T, r *Replay) (appended, compacted []byte) {
	t.Helper()
	must := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	task := must(encode(record{Task: &r.Identity}))
	var init []byte
	if r.Init != nil {
		init = must(encode(record{Exit: r.Init}))
	}
	appended = append(append(appended, task...), init...)
	execs := map[string][]byte{}
	for id, st := range r.execs {
		line := must(encode(record{ExecID: id, Exit: &st}))
		appended = append(appended, line...)
		appended = append(appended, must(encode(record{ExecID: id, Deleted: true}))...)
		appended = append(appended, line...)
		execs[id] = line
	}
	return appended, liveRecords(task, init, execs, 0)
}
