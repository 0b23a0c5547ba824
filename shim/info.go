package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	// Registers the type URL of runtime-spec's features.Features, which
	// containerd decodes from RuntimeInfo.
	_ "github.com/containerd/containerd/v2/core/runtime"
	shimpkg "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/typeurl/v2"
)

// Info describes the runtime for containerd's introspection, including
// what runc supports (`runc features`): without it containerd's CRI plugin
// treats recursive read-only mounts and user namespaces as unsupported.
func (m *Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	info := &types.RuntimeInfo{
		Name:    RuntimeName,
		Version: &types.RuntimeVersion{Version: m.Version, Revision: m.Revision},
	}
	binary := runc.DefaultCommand
	opts, err := shimpkg.ReadRuntimeOptions[*options.Options](optionsR)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("runtime options: %w", err)
	default:
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
