//go:build e2e

package harness

import (
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	line := `2026-11-23 06:55:34.921917182 +0000 UTC k8s.io /tasks/exit {"container_id":"c1","id":"c1","pid":42,"exit_status":3,"exited_at":{"seconds":1795416819,"nanos":27003895}}`
	e, ok := ParseEvent(line)
	if !ok {
		t.Fatal("not parsed")
	}
	want := Event{
		Timestamp: "2026-11-23 06:55:34.921917182 +0000 UTC", Namespace: "k8s.io", Topic: "/tasks/exit",
		ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 3,
		ExitedAt: time.Unix(1795416819, 27003895).UTC(),
		Payload:  line[len("2026-11-23 06:55:34.921917182 +0000 UTC k8s.io /tasks/exit "):],
	}
	if e != want {
		t.Fatalf("got %+v\nwant %+v", e, want)
	}
	if _, ok := ParseEvent(`time="..." level=warning msg="DEPRECATION"`); ok {
		t.Fatal("parsed a log line as an event")
	}
}
