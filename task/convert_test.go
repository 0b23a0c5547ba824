package task

import (
	"testing"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestStatusOf(t *testing.T) {
	for in, want := range map[string]tasktypes.Status{
		"created": tasktypes.Status_CREATED,
		"running": tasktypes.Status_RUNNING,
		"paused":  tasktypes.Status_PAUSED,
		"stopped": tasktypes.Status_STOPPED,
		"deleted": tasktypes.Status_UNKNOWN,
		"":        tasktypes.Status_UNKNOWN,
	} {
		if got := statusOf(in); got != want {
			t.Errorf("statusOf(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestProcessSpec(t *testing.T) {
	p, err := processSpec(&anypb.Any{Value: []byte(`{"args":["sh","-c","true"],"cwd":"/"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Args) != 3 || p.Args[0] != "sh" || p.Cwd != "/" {
		t.Fatalf("spec %+v", p)
	}
	for _, a := range []*anypb.Any{nil, {}, {Value: []byte("[")}} {
		if _, err := processSpec(a); !errdefs.IsInvalidArgument(err) {
			t.Errorf("processSpec(%v) = %v, want InvalidArgument", a, err)
		}
	}
}
