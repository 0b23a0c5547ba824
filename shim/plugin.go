package shim

import (
	"context"
	"os"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	shimpkg "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/proc"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// socketEnv carries the server's own socket address from `start` to the
// server, so it can remove the socket when it shuts down.
const socketEnv = "WATCH_SHIM_SOCKET"

// Register registers the task service plugin with the shim framework.
func Register() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.InternalPlugin},
		InitFn:   initService,
	})
}

func initService(ic *plugin.InitContext) (interface{}, error) {
	v, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
	if err != nil {
		return nil, err
	}
	sd := v.(shutdown.Service)
	ns, err := namespaces.NamespaceRequired(ic.Context)
	if err != nil {
		return nil, err
	}
	pub := newPublisher(ic.Properties[plugins.PropertyTTRPCAddress], ns)
	mon := exitmon.New(pub)
	proc.UseMonitor(mon)
	ctx, cancel := context.WithCancel(context.Background())
	go mon.Run(ctx)
	sd.RegisterCallback(func(context.Context) error {
		// containerd asked us to go: it is up, so the last events can
		// still be delivered. The framework waits 5 s for callbacks.
		dctx, dcancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer dcancel()
		if err := mon.Drain(dctx); err != nil {
			log.G(dctx).WithError(err).Warn("exiting with undelivered events")
		}
		cancel()
		if addr := os.Getenv(socketEnv); addr != "" {
			_ = shimpkg.RemoveSocket(addr)
		}
		return pub.Close()
	})
	return task.New(mon, ns, sd), nil
}
