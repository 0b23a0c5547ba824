package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/watchapi"
)

// nodeHelp ends the usage of pods and watch.
var nodeHelp = `
pods and watch read the node lifecycle log that every shim of the node writes, in
` + nodelog.DefaultDir + ` ($` + nodelog.DirEnv + ` overrides it); they need
read access to it (root).
`

// outputFlag is -o: "" (a table) or "json".
func outputFlag(fs *flag.FlagSet, o *string) {
	fs.StringVar(o, "o", "", "output format: json (default: a table)")
}

func checkOutput(o string) error {
	if o != "" && o != "json" {
		return usageError(fmt.Sprintf("-o %q: the only format is json", o))
	}
	return nil
}

// pods implements `pods [-o json]`: the node's sandboxes, containers and
// execs not deleted, as a table or as one JSON object (cursor, items).
func pods(output string, args []string, w io.Writer) error {
	if len(args) != 0 {
		return usageError("pods takes no arguments")
	}
	if err := checkOutput(output); err != nil {
		return err
	}
	c, err := watchapi.Open("")
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.List()
	if err != nil {
		return err
	}
	if output == "json" {
		enc := json.NewEncoder(w)
		return enc.Encode(struct {
			Cursor string            `json:"cursor"`
			Items  []watchapi.Record `json:"items"`
		}{st.Cursor, nonNil(st.Items)})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tEXEC\tNAME\tSTATE\tEXIT\tPID\tPOD\tPOD NAMESPACE\tNAMESPACE\tIMAGE")
	for _, r := range st.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, short(r.ContainerID), dash(r.ExecID),
			dash(r.ContainerName), stateOf(&r), exitOf(&r), pidOf(&r), dash(r.PodName), dash(r.PodNamespace), r.Namespace, dash(r.Image))
	}
	return tw.Flush()
}

func nonNil(rs []watchapi.Record) []watchapi.Record {
	if rs == nil {
		return []watchapi.Record{}
	}
	return rs
}

// stateOf says what the latest record means for a task or exec now.
func stateOf(r *watchapi.Record) string {
	switch r.Event {
	case nodelog.EventCreated, nodelog.EventExecAdded:
		return "created"
	case nodelog.EventExited:
		return "exited"
	case nodelog.EventPaused:
		return "paused"
	}
	return "running"
}

func exitOf(r *watchapi.Record) string {
	if r.ExitStatus == nil {
		return "-"
	}
	s := strconv.FormatUint(uint64(*r.ExitStatus), 10)
	if r.OOM {
		s += " (oom)"
	}
	return s
}

func pidOf(r *watchapi.Record) string {
	if r.Pid == 0 {
		return "-"
	}
	return strconv.Itoa(r.Pid)
}

func short(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// watchLine is one line of `watch -o json`: the record and the cursor to
// resume after it.
type watchLine struct {
	Cursor string `json:"cursor"`
	*watchapi.Record
}

// watch implements `watch [--since CURSOR] [-o json]`: every record after
// the cursor (without one: the current state, a marker, then what
// follows), until interrupted.
func watch(since, output string, args []string, w io.Writer) error {
	if len(args) != 0 {
		return usageError("watch takes no arguments (a cursor goes with --since)")
	}
	if err := checkOutput(output); err != nil {
		return err
	}
	c, err := watchapi.Open("")
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	var opts []watchapi.WatchOption
	if since == "" {
		opts = append(opts, watchapi.WithInitialState())
	}
	enc := json.NewEncoder(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if output == "" {
		fmt.Fprintln(tw, "TIME\tEVENT\tKIND\tID\tEXEC\tNAME\tEXIT\tPID\tPOD\tPOD NAMESPACE")
	}
	for ev, err := range c.Watch(ctx, since, opts...) {
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := writeEvent(ev, output, enc, tw); err != nil {
			return err
		}
	}
	return nil
}

func writeEvent(ev watchapi.Event, output string, enc *json.Encoder, tw *tabwriter.Writer) error {
	if output == "json" {
		if ev.InitialStateDone {
			return enc.Encode(struct {
				Cursor string `json:"cursor"`
				Event  string `json:"event"`
			}{ev.Cursor, "initial_state_done"})
		}
		return enc.Encode(watchLine{ev.Cursor, &ev.Record})
	}
	if ev.InitialStateDone {
		fmt.Fprintln(tw, "--- initial state above, changes below ---")
		return tw.Flush()
	}
	r := &ev.Record
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.TimeOnly), r.Event, r.Kind,
		short(r.ContainerID), dash(r.ExecID), dash(r.ContainerName), exitOf(r), pidOf(r), dash(r.PodName), dash(r.PodNamespace))
	return tw.Flush()
}
