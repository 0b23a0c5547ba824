package shim

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	ttrpcevents "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

var _ exitmon.Codec = (*publisher)(nil)

// publisher forwards events to containerd's ttrpc Events service. It holds
// one connection and redials after a failure (containerd restarted). It
// never retries itself: the exit monitor's outbox owns retries and order.
type publisher struct {
	address   string
	namespace string

	mu     sync.Mutex
	client *ttrpc.Client
}

func newPublisher(address, namespace string) *publisher {
	return &publisher{address: address, namespace: namespace}
}

// Publish sends one event and reports whether containerd accepted it.
func (p *publisher) Publish(ctx context.Context, topic string, ev any) error {
	msg, err := toAPI(ev)
	if err != nil {
		return err
	}
	a, err := typeurl.MarshalAnyToProto(msg)
	if err != nil {
		return err
	}
	c, err := p.connect()
	if err != nil {
		return err
	}
	_, err = ttrpcevents.NewEventsClient(c).Forward(ctx, &ttrpcevents.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.New(time.Now()), Namespace: p.namespace, Topic: topic, Event: a,
	}})
	if err != nil {
		p.drop(c)
		return fmt.Errorf("forward %s: %w", topic, err)
	}
	return nil
}

func (p *publisher) connect() (*ttrpc.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, nil
	}
	if p.address == "" {
		return nil, fmt.Errorf("no containerd ttrpc address to publish to")
	}
	conn, err := net.DialTimeout("unix", p.address, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p.client = ttrpc.NewClient(conn)
	return p.client, nil
}

func (p *publisher) drop(c *ttrpc.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == c {
		p.client.Close()
		p.client = nil
	}
}

// Close closes the connection.
func (p *publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client.Close()
	}
	return nil
}

// toAPI turns the exit monitor's own events into containerd's types.
func toAPI(ev any) (any, error) {
	switch e := ev.(type) {
	case exitmon.ExitEvent:
		id := e.ExecID
		if id == "" {
			id = e.ContainerID
		}
		return &eventsapi.TaskExit{
			ContainerID: e.ContainerID, ID: id, Pid: uint32(e.Pid),
			ExitStatus: uint32(e.Code), ExitedAt: timestamppb.New(e.ExitedAt),
		}, nil
	case exitmon.OOMEvent:
		return &eventsapi.TaskOOM{ContainerID: e.ContainerID}, nil
	case nil:
		return nil, fmt.Errorf("nil event")
	}
	return ev, nil
}

// Encode and Decode make the publisher an exitmon.Codec, so a task's queue
// can spill to its bundle instead of growing in memory while containerd is
// unreachable.
func (p *publisher) Encode(ev any) ([]byte, error) {
	msg, err := toAPI(ev)
	if err != nil {
		return nil, err
	}
	a, err := typeurl.MarshalAnyToProto(msg)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(a)
}

// Decode reverses Encode; it returns containerd's event type.
func (p *publisher) Decode(b []byte) (any, error) {
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return typeurl.UnmarshalAny(&a)
}
