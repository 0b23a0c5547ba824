package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/shim"
)

// command is a subcommand for people: `containerd-shim-watch-v2 NAME ARGS`.
type command struct {
	name    string
	args    string // its arguments, as its usage shows them
	summary string // its line in the binary's help
	detail  string // the rest of its own usage
	run     func(args []string) error
	// flags, if set, defines the command's flags before they are parsed.
	flags func(fs *flag.FlagSet)
}

// Flags of pods and watch.
var (
	outputOpt string
	sinceOpt  string
)

// commands are every subcommand; the help lists each of them.
var commands = []*command{
	{
		name: "counters", args: "PID|ADDRESS",
		summary: "print what a running shim's exit monitor has counted, as JSON",
		detail:  targetHelp,
		run:     func(args []string) error { return inspectTarget("counters", args) },
	},
	{
		name: "stacks", args: "PID|ADDRESS",
		summary: "print the stacks of a running shim's goroutines",
		detail:  targetHelp,
		run:     func(args []string) error { return inspectTarget("stacks", args) },
	},
	{
		name: "pods", args: "[-o json]",
		summary: "list the node's pods, containers and execs with their true exit codes (like crictl ps -a)",
		detail:  nodeHelp,
		flags:   func(fs *flag.FlagSet) { outputFlag(fs, &outputOpt) },
		run:     func(args []string) error { return pods(outputOpt, args, os.Stdout) },
	},
	{
		name: "watch", args: "[--since CURSOR] [-o json]",
		summary: "stream the node's pod lifecycle: the current state, then every change (like kubectl get -w)",
		detail: `
Without --since it prints the current state, a marker, then every change as
it happens; with --since CURSOR (the "cursor" of a line of -o json) exactly
what followed that line. A cursor older than the log keeps (one hour by
default, $` + nodelog.RetentionEnv + `) is refused: list again.
` + nodeHelp,
		flags: func(fs *flag.FlagSet) {
			outputFlag(fs, &outputOpt)
			fs.StringVar(&sinceOpt, "since", "", "resume after this cursor")
		},
		run: func(args []string) error { return watch(sinceOpt, outputOpt, args, os.Stdout) },
	},
}

// usageError is a command used wrongly: its usage follows, exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// main runs c with args and returns the exit status: 0, or 0 after its
// usage for -h, 1 when it failed, 2 after its usage when it was used wrongly.
func (c *command) main(args []string) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed below
	if c.flags != nil {
		c.flags(fs)
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.usage(os.Stdout)
		return 0
	case err != nil:
		err = usageError(err.Error())
	default:
		err = c.run(fs.Args())
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "%s %s: %v\n\n", shim.BinaryName, c.name, err)
		c.usage(os.Stderr)
		return 2
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", shim.BinaryName, c.name, err)
		return 1
	}
	return 0
}

// usage writes c's own usage.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s %s %s\n\n%s.\n%s", shim.BinaryName, c.name, c.args, capitalize(c.summary), c.detail)
}

// help implements `help [COMMAND]`.
func help(args []string) int {
	switch {
	case len(args) == 0:
		usage(os.Stdout)
		return 0
	case len(args) == 1 && lookup(args[0]) != nil:
		lookup(args[0]).usage(os.Stdout)
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s help: no command %q\n\n", shim.BinaryName, args)
	usage(os.Stderr)
	return 2
}

// usage writes the binary's usage: how containerd runs it, every command
// with one line, and the flags containerd passes.
func usage(w io.Writer) {
	fmt.Fprintf(w, `%[1]s is the containerd runtime io.containerd.watch.v2:
one shim process per pod, runc underneath, no container exit lost.

Usage:
  %[1]s [flags] start|delete   run by containerd (flags below)
  %[1]s -info | -v             runtime info for containerd, version
  %[1]s COMMAND [ARGS]         inspect a running shim

Commands:
`, shim.BinaryName)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\t%s\n", "print this help, or a command's usage")
	tw.Flush()
	fmt.Fprintf(w, "\nFlags (containerd passes them; a person seldom needs them):\n")
	shim.PrintFlags(w)
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
