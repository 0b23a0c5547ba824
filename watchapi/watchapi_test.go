package watchapi

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

func TestWatchErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w, err := nodelog.Open(dir, nodelog.Options{SegmentSize: 256, Retention: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Append(&Record{Event: nodelog.EventCreated, Kind: nodelog.KindContainer, ContainerID: "c0"})
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	old := st.Cursor
	for i := 0; i < 50; i++ {
		w.Append(&Record{Event: nodelog.EventCreated, Kind: nodelog.KindContainer, ContainerID: "c"})
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		since string
		want  error
	}{{old, ErrExpired}, {"garbage", ErrInvalidCursor}, {"0123456789abcdef0123456789abcdef.1", ErrInvalidCursor}} {
		for _, err := range c.Watch(ctx, tc.since) {
			if !errors.Is(err, tc.want) {
				t.Fatalf("watch from %q: %v, want %v", tc.since, err, tc.want)
			}
			if tc.want == ErrInvalidCursor && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("watch from %q: %v is not InvalidArgument", tc.since, err)
			}
			break
		}
	}
}
