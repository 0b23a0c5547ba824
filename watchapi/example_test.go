package watchapi_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// A node agent lists the node's state and watches what follows, in one
// call, then resumes from its last cursor after a restart. (Here a
// nodelog.Writer in a temporary directory stands in for the node's shims;
// an agent calls watchapi.Open("").)
func Example() {
	dir, _ := os.MkdirTemp("", "watchapi")
	defer os.RemoveAll(dir)
	shim, _ := nodelog.Open(filepath.Join(dir, "log"), nodelog.Options{})
	defer shim.Close()
	pod := nodelog.Record{Namespace: "k8s.io", SandboxID: "s1", PodName: "web", PodNamespace: "default", PodUID: "u1"}
	write := func(event, kind, id string, code ...uint32) {
		r := pod
		r.Event, r.Kind, r.ContainerID = event, kind, id
		if len(code) > 0 {
			r.ExitStatus = &code[0]
		}
		shim.Append(&r)
	}
	write(nodelog.EventCreated, nodelog.KindSandbox, "s1")
	write(nodelog.EventStarted, nodelog.KindSandbox, "s1")
	write(nodelog.EventCreated, nodelog.KindContainer, "c1")

	c, err := watchapi.Open(filepath.Join(dir, "log"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last string
	for ev, err := range c.Watch(ctx, "", watchapi.WithInitialState()) {
		if err != nil {
			fmt.Println(err)
			return
		}
		if ev.InitialStateDone {
			fmt.Println("-- initial state done")
			write(nodelog.EventStarted, nodelog.KindContainer, "c1")
			write(nodelog.EventExited, nodelog.KindContainer, "c1", 3)
			continue
		}
		r := ev.Record
		fmt.Printf("%s %s %s %s/%s initial=%v\n", r.Event, r.Kind, r.ContainerID, r.PodNamespace, r.PodName, ev.Initial)
		last = ev.Cursor
		if r.Event == nodelog.EventExited {
			break // the agent stops (or dies) here
		}
	}

	// Later: resume from the last cursor; nothing is missed or repeated.
	write(nodelog.EventDeleted, nodelog.KindContainer, "c1", 3)
	for ev, err := range c.Watch(ctx, last) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %s exit_status=%d\n", ev.Record.Event, ev.Record.ContainerID, *ev.Record.ExitStatus)
		break
	}
	// Output:
	// started sandbox s1 default/web initial=true
	// created container c1 default/web initial=true
	// -- initial state done
	// started container c1 default/web initial=false
	// exited container c1 default/web initial=false
	// deleted c1 exit_status=3
}
