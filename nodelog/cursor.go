package nodelog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

var (
	// ErrExpired is returned for a cursor older than the oldest record the
	// log retains: records after it may be gone, so the reader must list
	// again (Kubernetes' 410 Gone).
	ErrExpired = errors.New("nodelog: cursor expired: list again")
	// ErrInvalidCursor is returned for a cursor that is not one, or that
	// names another log (another boot, or a log removed and re-created). It
	// is an errdefs InvalidArgument.
	ErrInvalidCursor = fmt.Errorf("nodelog: invalid cursor: %w", errdefs.ErrInvalidArgument)
)

// Cursor is a position in a log: after the record with revision Rev. Its
// string form is "<log id>.<rev>"; readers treat it as opaque.
type Cursor struct {
	Log string
	Rev uint64
}

// String returns the cursor's opaque text.
func (c Cursor) String() string { return c.Log + "." + strconv.FormatUint(c.Rev, 10) }

// ParseCursor parses the text of a cursor; anything else is
// ErrInvalidCursor.
func ParseCursor(s string) (Cursor, error) {
	id, rev, ok := strings.Cut(s, ".")
	if !ok || !validLogID(id) {
		return Cursor{}, fmt.Errorf("%q: %w", s, ErrInvalidCursor)
	}
	n, err := strconv.ParseUint(rev, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != rev {
		return Cursor{}, fmt.Errorf("%q: %w", s, ErrInvalidCursor)
	}
	return Cursor{Log: id, Rev: n}, nil
}

// validLogID reports whether s has the form of a log id: 32 lower-case hex
// digits.
func validLogID(s string) bool {
	if len(s) != 2*logIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
