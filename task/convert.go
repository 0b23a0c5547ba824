package task

import (
	"encoding/json"
	"fmt"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

type emptyResponse = emptypb.Empty

var empty = &emptypb.Empty{}

// statusOf maps proc's state names to the API's status.
func statusOf(s string) tasktypes.Status {
	switch s {
	case "created":
		return tasktypes.Status_CREATED
	case "running":
		return tasktypes.Status_RUNNING
	case "paused":
		return tasktypes.Status_PAUSED
	case "stopped":
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}

// processSpec decodes an exec's OCI process spec (JSON in an Any).
func processSpec(a *anypb.Any) (*specs.Process, error) {
	if a == nil || len(a.GetValue()) == 0 {
		return nil, fmt.Errorf("exec without process spec: %w", errdefs.ErrInvalidArgument)
	}
	var p specs.Process
	if err := json.Unmarshal(a.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("exec process spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}
