//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// fullScale reports whether the issue-scale variants of the node log tests
// run (WATCH_NODELOG_FULL=1; by hand, not in CI).
func fullScale() bool { return os.Getenv("WATCH_NODELOG_FULL") == "1" }

// stockEvent is one event as a subscriber of containerd's gRPC Events
// service got it, what agents consume today.
type stockEvent struct {
	Topic, Namespace string
	ContainerID, ID  string // ID: the exec id of a TaskExit (the container's own for its init)
	ExitStatus       uint32
	ExitedAt         time.Time
	Received         time.Time
}

// dialContainerd returns a gRPC connection to c, closed when ctx ends.
func dialContainerd(ctx context.Context, c *harness.Containerd) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, nil
}

// subscribeGRPC subscribes to containerd's events the way an agent does
// with containerd's Go API and returns them, time-stamped on receipt,
// until ctx ends. Like an agent, it cannot know when the subscription is
// live: the call returns once the stream is opened.
func subscribeGRPC(ctx context.Context, conn *grpc.ClientConn) (<-chan stockEvent, error) {
	stream, err := eventsapi.NewEventsClient(conn).Subscribe(ctx, &eventsapi.SubscribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	out := make(chan stockEvent, 4096)
	go func() {
		defer close(out)
		for {
			env, err := stream.Recv()
			if err != nil {
				return
			}
			e := stockEvent{Topic: env.Topic, Namespace: env.Namespace, Received: time.Now()}
			decodeStock(&e, env.Event.GetValue())
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// decodeStock fills e's ids (and exit) from the event payload of its topic.
func decodeStock(e *stockEvent, payload []byte) {
	switch e.Topic {
	case "/containers/create":
		var m apievents.ContainerCreate
		if proto.Unmarshal(payload, &m) == nil {
			e.ContainerID = m.ID
		}
	case "/containers/delete":
		var m apievents.ContainerDelete
		if proto.Unmarshal(payload, &m) == nil {
			e.ContainerID = m.ID
		}
	case "/tasks/exit":
		var m apievents.TaskExit
		if proto.Unmarshal(payload, &m) == nil {
			e.ContainerID, e.ID, e.ExitStatus = m.ContainerID, m.ID, m.ExitStatus
			e.ExitedAt = m.ExitedAt.AsTime()
		}
	}
}

// stockConsumer is an agent of today: it lists containerd's containers
// (namespace k8s.io), then subscribes to containerd's events, and tracks
// which containers it learned of, and how.
type stockConsumer struct {
	mu       sync.Mutex
	listed   map[string]bool
	created  map[string]int // /containers/create events
	exited   map[string]int // TaskExit of the init
	listedAt time.Time      // when List returned
}

// run lists, subscribes and consumes until ctx ends.
func (s *stockConsumer) run(ctx context.Context, conn *grpc.ClientConn) error {
	s.listed, s.created, s.exited = map[string]bool{}, map[string]int{}, map[string]int{}
	lctx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "k8s.io")
	resp, err := containersapi.NewContainersClient(conn).List(lctx, &containersapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	s.mu.Lock()
	s.listedAt = time.Now()
	for _, ct := range resp.Containers {
		s.listed[ct.ID] = true
	}
	s.mu.Unlock()
	events, err := subscribeGRPC(ctx, conn)
	if err != nil {
		return err
	}
	for e := range events {
		if e.Namespace != "k8s.io" {
			continue
		}
		s.mu.Lock()
		switch {
		case e.Topic == "/containers/create":
			s.created[e.ContainerID]++
		case e.Topic == "/tasks/exit" && e.ID == e.ContainerID:
			s.exited[e.ContainerID]++
		}
		s.mu.Unlock()
	}
	return nil
}

// missed counts, among the lifecycles whose removal began after the
// consumer listed, the containers it never learned of (neither listed nor
// created in its stream) and those stopped after it listed whose exit it
// missed.
func (s *stockConsumer) missed(done []lifecycle) (containers, exits, considered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range done {
		if s.listedAt.IsZero() || !l.removing.After(s.listedAt) {
			continue
		}
		considered++
		switch {
		case !s.listed[l.id] && s.created[l.id] == 0:
			containers++
		case l.stopping.After(s.listedAt) && s.exited[l.id] == 0:
			exits++
		}
	}
	return containers, exits, considered
}
