package shim

import (
	"context"
	"fmt"
	"io"
	"os/exec"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/watchshim/containerd-shim-watch-v2/proc"
)

func init() {
	// The type URL containerd decodes RuntimeInfo.Features with (it
	// registers the same in core/runtime).
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "features", "Features")
}

// Info describes the runtime for containerd's introspection, including
// what runc supports (`runc features`): without it containerd's CRI plugin
// treats recursive read-only mounts and user namespaces as unsupported.
func (m *Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	info := &types.RuntimeInfo{
		Name:    RuntimeName,
		Version: &types.RuntimeVersion{Version: m.Version, Revision: m.Revision},
	}
	binary := runc.DefaultCommand
	opts, err := readRuntimeOptions(optionsR)
	switch {
	case err != nil:
		return nil, fmt.Errorf("runtime options: %w", err)
	case opts != nil:
		if info.Options, err = typeurl.MarshalAnyToProto(opts); err != nil {
			return nil, err
		}
		if opts.BinaryName != "" {
			binary = opts.BinaryName
		}
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("runc binary %q: %w", binary, err)
	}
	features, err := (&runc.Runc{Command: path}).Features(ctx)
	if err != nil {
		return nil, fmt.Errorf("runc features: %w", err)
	}
	if info.Features, err = typeurl.MarshalAnyToProto(features); err != nil {
		return nil, err
	}
	return info, nil
}

// readRuntimeOptions reads runtime options (a protobuf Any, see
// proc.RuntimeOptions) from r; nil when r is empty.
func readRuntimeOptions(r io.Reader) (*options.Options, error) {
	b, err := io.ReadAll(r)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return proc.RuntimeOptions(&a)
}
