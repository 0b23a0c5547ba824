package task

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// InspectService names the shim's own ttrpc endpoint that shows what it is
// doing (the inspect endpoint). Its wire name keeps the word Monitor for
// the clients that already call it. Each method answers an Empty with a BytesValue: CountersMethod
// holds Counters as JSON, StacksMethod every goroutine's stack as text.
// RegisterTTRPC registers it beside the task API, on the same server and
// socket and nowhere else, so it reaches exactly as far as the task API
// does: the owner-only socket and the server's same-user handshake.
const (
	InspectService = "containerd.watch.v1.Monitor"
	CountersMethod = "Counters"
	StacksMethod   = "Stacks"
)

// Counters is what the shim reports about itself.
type Counters struct {
	exitmon.Counters
	Tasks      int `json:"tasks"`
	Goroutines int `json:"goroutines"`
	OpenFDs    int `json:"open_fds"`
	// Go runtime memory, for the memory diet.
	HeapInuse    uint64 `json:"heap_inuse_bytes"`
	HeapIdle     uint64 `json:"heap_idle_bytes"`
	HeapReleased uint64 `json:"heap_released_bytes"` // idle and given back to the kernel
	HeapLive     uint64 `json:"heap_live_bytes"`     // reachable at the last collection
	StackInuse   uint64 `json:"stack_inuse_bytes"`
	GoSys        uint64 `json:"go_sys_bytes"`
	GCCycles     uint32 `json:"gc_cycles"`
	// MemoryClasses is the Go runtime's own split of the memory it has
	// mapped (runtime/metrics /memory/classes/..., in bytes, keyed without
	// the prefix and unit): where a shim's resident memory goes.
	MemoryClasses map[string]uint64 `json:"memory_classes,omitempty"`
}

func (s *Service) counters() Counters {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	fds, _ := os.ReadDir("/proc/self/fd")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Counters{
		Counters: s.mon.Counters(), Tasks: n, Goroutines: runtime.NumGoroutine(), OpenFDs: len(fds),
		HeapInuse: ms.HeapInuse, HeapIdle: ms.HeapIdle, HeapReleased: ms.HeapReleased, HeapLive: heapLive(),
		StackInuse: ms.StackInuse, GoSys: ms.Sys, GCCycles: ms.NumGC, MemoryClasses: memoryClasses(),
	}
}

func memoryClasses() map[string]uint64 {
	const prefix, unit = "/memory/classes/", ":bytes"
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, prefix) && strings.HasSuffix(d.Name, unit) && d.Name != prefix+"total"+unit {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	out := make(map[string]uint64, len(samples))
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			out[strings.TrimSuffix(strings.TrimPrefix(s.Name, prefix), unit)] = s.Value.Uint64()
		}
	}
	return out
}

func heapLive() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

func (s *Service) registerInspect(server *ttrpc.Server) {
	server.RegisterService(InspectService, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			CountersMethod: func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
				if err := unmarshal(&emptypb.Empty{}); err != nil {
					return nil, err
				}
				b, err := json.Marshal(s.counters())
				if err != nil {
					return nil, err
				}
				return wrapperspb.Bytes(b), nil
			},
			StacksMethod: func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
				if err := unmarshal(&emptypb.Empty{}); err != nil {
					return nil, err
				}
				return wrapperspb.Bytes(allStacks()), nil
			},
		},
	})
}

// allStacks returns the stacks of every goroutine, as a panic prints them.
func allStacks() []byte {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// ReadStacks asks the shim serving client for its goroutine stacks.
func ReadStacks(ctx context.Context, client *ttrpc.Client) ([]byte, error) {
	var resp wrapperspb.BytesValue
	if err := client.Call(ctx, InspectService, StacksMethod, &emptypb.Empty{}, &resp); err != nil {
		return nil, err
	}
	return resp.Value, nil
}

// ReadCounters asks the shim serving client for its counters.
func ReadCounters(ctx context.Context, client *ttrpc.Client) (Counters, error) {
	var resp wrapperspb.BytesValue
	if err := client.Call(ctx, InspectService, CountersMethod, &emptypb.Empty{}, &resp); err != nil {
		return Counters{}, err
	}
	var c Counters
	err := json.Unmarshal(resp.Value, &c)
	return c, err
}
