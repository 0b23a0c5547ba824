package shim

import (
	"context"
	"encoding/json"
	"errors"
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

// BinaryName is the name containerd finds the binary by, from the runtime
// type io.containerd.watch.v2.
const BinaryName = "containerd-shim-watch-v2"

// usageError is a command line containerd never writes (an unknown flag or
// action, a missing -namespace): Run answers it with the usage and exit
// status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// newFlagSet defines the flags containerd passes, parsed into f.
func newFlagSet(f *flags) *flag.FlagSet {
	fs := flag.NewFlagSet(BinaryName, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Run prints errors and usage itself
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the task")
	fs.StringVar(&f.id, "id", "", "id of the task")
	fs.StringVar(&f.address, "address", "", "containerd's gRPC address")
	fs.StringVar(&f.bundle, "bundle", "", "bundle path, if not the working directory")
	fs.StringVar(&f.socket, "socket", "", "serve on this socket path instead of claiming the one start chose")
	fs.String("publish-binary", "", "ignored: events go to $TTRPC_ADDRESS")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.version, "v", false, "print the version")
	fs.BoolVar(&f.info, "info", false, "print runtime info (a RuntimeInfo protobuf) for containerd")
	return fs
}

// PrintFlags writes the flags containerd passes, one with its meaning per
// entry, for the binary's usage.
func PrintFlags(w io.Writer) {
	fs := newFlagSet(&flags{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// parseFlags parses a command line as containerd writes it: flags, then at
// most one action. It returns flag.ErrHelp for -h/-help, and a usageError for
// anything containerd would never pass.
func parseFlags(args []string) (flags, error) {
	var f flags
	fs := newFlagSet(&f)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, usageError(err.Error())
	}
	if fs.NArg() > 1 {
		return f, usageError(fmt.Sprintf("one action expected, got %q", fs.Args()))
	}
	f.action = fs.Arg(0)
	if f.bundle == "" {
		f.bundle, _ = os.Getwd()
	}
	return f, f.check()
}

// check refuses what containerd never asks: an action other than start or
// delete, or an action (or serving) without a namespace.
func (f flags) check() error {
	switch {
	case f.version || f.info:
		return nil
	case f.action != "" && f.action != "start" && f.action != "delete":
		return usageError(fmt.Sprintf("unknown command %q", f.action))
	case f.namespace == "":
		return usageError("-namespace is required")
	}
	return nil
}

// Run runs the binary for one of containerd's invocations: `start` (find or
// spawn the pod's server and print its address), `delete` (clean up after a
// server that died), `-info`, `-v`, or no action: serve. usage writes the
// whole binary's usage: Run prints it for -h (exit 0) and after a command
// line containerd would never write (exit 2).
func Run(version, revision string, usage func(io.Writer)) int {
	f, err := parseFlags(os.Args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(os.Stdout)
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %s\n\n", BinaryName, err)
		usage(os.Stderr)
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
