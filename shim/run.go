package shim

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	taskapi "github.com/watchshim/containerd-shim-watch-v2/task/api"
)

// flags are what containerd passes to every invocation of a shim binary
// (containerd 2.x, core/runtime/v2/command.go): -namespace, -address,
// -publish-binary, -id, optionally -bundle and -debug, then the action.
type flags struct {
	namespace, id, address, bundle, socket string
	debug, version, info                   bool
	action                                 string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet(filepath.Base(args[0]), flag.ContinueOnError)
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the task")
	fs.StringVar(&f.id, "id", "", "id of the task")
	fs.StringVar(&f.address, "address", "", "containerd's gRPC address")
	fs.StringVar(&f.bundle, "bundle", "", "bundle path, if not the working directory")
	fs.StringVar(&f.socket, "socket", "", "serve on this socket path instead of claiming the one start chose")
	fs.String("publish-binary", "", "ignored: events go to $TTRPC_ADDRESS")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.version, "v", false, "print the version")
	fs.BoolVar(&f.info, "info", false, "print runtime info (a RuntimeInfo protobuf) for containerd")
	if err := fs.Parse(args[1:]); err != nil {
		return f, err
	}
	f.action = fs.Arg(0)
	if f.bundle == "" {
		f.bundle, _ = os.Getwd()
	}
	return f, nil
}

// Run runs the binary for one of containerd's invocations: `start` (find or
// spawn the pod's server and print its address), `delete` (clean up after a
// server that died), `-info`, `-v`, or no action: serve.
func Run(version, revision string) int {
	f, err := parseFlags(os.Args)
	if err != nil {
		return 2
	}
	m := &Manager{Version: version, Revision: revision}
	if err := run(m, f); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", RuntimeName, err)
		return 1
	}
	return 0
}

func run(m *Manager, f flags) error {
	switch {
	case f.version:
		fmt.Printf("%s:\n  Version:  %s\n  Revision: %s\n  Go version: %s\n",
			filepath.Base(os.Args[0]), m.Version, m.Revision, runtime.Version())
		return nil
	case f.info:
		info, err := m.Info(context.Background(), os.Stdin)
		if err != nil {
			return err
		}
		return writeProto(os.Stdout, info)
	}
	if f.namespace == "" {
		return fmt.Errorf("shim namespace cannot be empty")
	}
	ctx := namespaces.WithNamespace(context.Background(), f.namespace)
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("runtime", RuntimeName))
	switch f.action {
	case "start":
		addr, err := m.Start(ctx, f)
		if err != nil {
			return err
		}
		// containerd 2.x reads the bootstrap parameters as JSON.
		return json.NewEncoder(os.Stdout).Encode(bootstrapParams{Version: 3, Address: addr, Protocol: "ttrpc"})
	case "delete":
		st, err := m.Stop(ctx, f)
		if err != nil {
			return err
		}
		return writeProto(os.Stdout, &taskapi.DeleteResponse{
			Pid: uint32(st.Pid), ExitStatus: uint32(st.Code), ExitedAt: timestamppb.New(st.ExitedAt),
		})
	case "":
		return serve(ctx, f)
	}
	return fmt.Errorf("unknown action %q", f.action)
}

// bootstrapParams is the JSON `start` prints: the task API version the
// server speaks, its address and protocol.
type bootstrapParams struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

func writeProto(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
