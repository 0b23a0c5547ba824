// Package watchapi is the client of the node lifecycle log: what a node
// agent uses to learn every pod's lifecycle on a node running the
// io.containerd.watch.v2 shim, without a gap between listing and watching,
// across its own restarts, at its own pace.
//
// The model is Kubernetes' list/watch. List returns the current state
// (every sandbox, container and exec not deleted, each with its latest
// record) and a cursor; Watch from that cursor yields every record written
// after it, in revision order, exactly once. Every record carries the pod's
// identity. A consumer that stores the Cursor of the last event it handled
// resumes from it after a restart and misses nothing; if it was away longer
// than the log's retention (one hour by default, see nodelog.RetentionEnv)
// the cursor is refused with ErrExpired, and it lists again.
//
// The client only reads files: a slow or stuck consumer never slows a shim.
// It needs read access to the log directory (root, by default).
package watchapi

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
)

// Record is one transition of a sandbox, container or exec.
type Record = nodelog.Record

var (
	// ErrExpired is returned for a cursor older than the log retains: list
	// again.
	ErrExpired = nodelog.ErrExpired
	// ErrInvalidCursor is returned for a cursor that is not one, or one of
	// another log (another boot); it is an errdefs InvalidArgument.
	ErrInvalidCursor = nodelog.ErrInvalidCursor
)

// Client reads one node's log. It is safe for concurrent use.
type Client struct {
	r *nodelog.Reader
}

// Open opens the log in dir; "" means the node's log (nodelog.Dir()). It
// fails when no shim has written the log yet.
func Open(dir string) (*Client, error) {
	if dir == "" {
		dir = nodelog.Dir()
	}
	r, err := nodelog.OpenReader(dir)
	if err != nil {
		return nil, err
	}
	return &Client{r: r}, nil
}

// Close releases the client's files.
func (c *Client) Close() error { return c.r.Close() }

// Skipped counts the lines of the log the client could not parse and
// skipped.
func (c *Client) Skipped() uint64 { return c.r.Skipped() }

// State is the node's state at one revision.
type State struct {
	// Items holds the latest record of every sandbox, container and exec
	// not deleted, in revision order.
	Items []Record
	// Cursor is where a Watch continues from.
	Cursor string
}

// List returns the node's current state.
func (c *Client) List() (*State, error) {
	st, cur, err := c.r.List()
	if err != nil {
		return nil, err
	}
	return &State{Items: st.Records(), Cursor: cur.String()}, nil
}

// Event is one step of a Watch.
type Event struct {
	// Record is the record; zero in the InitialStateDone marker.
	Record Record
	// Cursor is the position after this event: a Watch from it yields
	// what follows. Initial records carry the cursor of the whole initial
	// state: store it once InitialStateDone has come.
	Cursor string
	// Initial marks a record of the initial state (WithInitialState).
	Initial bool
	// InitialStateDone marks the end of the initial state.
	InitialStateDone bool
}

// WatchOption changes what a Watch yields.
type WatchOption func(*watchOpts)

type watchOpts struct{ initial bool }

// WithInitialState makes a Watch without a cursor start with the current
// state (each record marked Initial), then an InitialStateDone marker, then
// what follows: list and watch in one, with no gap between them.
func WithInitialState() WatchOption { return func(o *watchOpts) { o.initial = true } }

// Watch yields every record after the cursor since, in revision order,
// waiting for new ones until ctx ends or the caller stops. With since ""
// it starts from now, or from the current state (WithInitialState). A
// failure ends the sequence with a non-nil error (ErrExpired,
// ErrInvalidCursor, or ctx's error).
func (c *Client) Watch(ctx context.Context, since string, opts ...WatchOption) iter.Seq2[Event, error] {
	var o watchOpts
	for _, f := range opts {
		f(&o)
	}
	return func(yield func(Event, error) bool) {
		cur, ok := c.start(since, o, yield)
		if !ok {
			return
		}
		errStop := errors.New("stop")
		err := c.r.Follow(ctx, cur, func(r *Record) error {
			if !yield(Event{Record: *r, Cursor: nodelog.Cursor{Log: cur.Log, Rev: r.Rev}.String()}, nil) {
				return errStop
			}
			return nil
		})
		if !errors.Is(err, errStop) {
			yield(Event{}, err)
		}
	}
}

// start yields the initial state if asked and returns the cursor to follow
// from; false when the sequence ended.
func (c *Client) start(since string, o watchOpts, yield func(Event, error) bool) (nodelog.Cursor, bool) {
	if since != "" {
		if o.initial {
			yield(Event{}, fmt.Errorf("watch: a cursor and the initial state: %w", ErrInvalidCursor))
			return nodelog.Cursor{}, false
		}
		cur, err := nodelog.ParseCursor(since)
		if err != nil {
			yield(Event{}, err)
			return cur, false
		}
		return cur, true
	}
	st, cur, err := c.r.List()
	if err != nil {
		yield(Event{}, err)
		return cur, false
	}
	if !o.initial {
		return cur, true
	}
	for _, r := range st.Records() {
		if !yield(Event{Record: r, Cursor: cur.String(), Initial: true}, nil) {
			return cur, false
		}
	}
	return cur, yield(Event{Cursor: cur.String(), InitialStateDone: true}, nil)
}
