package shim

import (
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// TestCodecRoundTrip: a spilled exit comes back as containerd's TaskExit
// with every field.
func TestCodecRoundTrip(t *testing.T) {
	p := newPublisher("", "ns")
	at := time.Unix(1700000000, 42).UTC()
	b, err := p.Encode(exitmon.ExitEvent{ContainerID: "c", ExecID: "e", Status: exitmon.Status{Pid: 7, Code: 9, ExitedAt: at}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := v.(*eventsapi.TaskExit)
	if !ok || e.ContainerID != "c" || e.ID != "e" || e.Pid != 7 || e.ExitStatus != 9 || !e.ExitedAt.AsTime().Equal(at) {
		t.Fatalf("decoded %T %+v", v, v)
	}
}
