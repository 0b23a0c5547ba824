package task

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// toTTRPC maps an errdefs error to the status code containerd expects.
// It is the only place errors change form: inside, errors are errdefs.
func toTTRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

// validateID checks a container or exec id against containerd's
// identifier grammar before any path is built from it.
func validateID(kind, id string) error {
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("%s id: %w", kind, err)
	}
	return nil
}

// validateExecID is validateID for an optional exec id.
func validateExecID(id string) error {
	if id == "" {
		return nil
	}
	return validateID("exec", id)
}

// validateBundle requires a clean absolute bundle path.
func validateBundle(bundle string) error {
	if !filepath.IsAbs(bundle) || filepath.Clean(bundle) != bundle {
		return fmt.Errorf("bundle %q is not a clean absolute path: %w", bundle, errdefs.ErrInvalidArgument)
	}
	return nil
}

// maxSignal is the highest signal number Linux has (SIGRTMAX).
const maxSignal = 64

// validateSignal refuses a number that is no signal. 0 is kill(2)'s
// existence check and is allowed.
func validateSignal(sig uint32) error {
	if sig > maxSignal {
		return fmt.Errorf("signal %d: not a signal (0-%d): %w", sig, maxSignal, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateWinSize refuses a terminal size that does not fit the kernel's
// 16-bit winsize fields (it would be truncated, not refused, further down).
func validateWinSize(w, h uint32) error {
	if w > 0xffff || h > 0xffff {
		return fmt.Errorf("terminal size %dx%d: larger than 65535: %w", w, h, errdefs.ErrInvalidArgument)
	}
	return nil
}
