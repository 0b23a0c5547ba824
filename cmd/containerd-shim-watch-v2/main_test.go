package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainEnv makes the test binary run main instead of the tests, so a
// test can run the binary's whole command line as a process.
const runMainEnv = "WATCH_SHIM_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// result is what one run of the binary printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// runBinary runs main with args in a process of its own (the test binary
// again), in a fresh directory, with stdin empty.
func runBinary(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %q: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// The binary's help names every subcommand with its line, and the
// invocations and flags containerd uses.
func TestHelpListsEverySubcommand(t *testing.T) {
	want := []string{"counters PID|ADDRESS", "stacks PID|ADDRESS", "help [COMMAND]",
		"start|delete", "-info", "-v", "-namespace", "-address", "-id", "-bundle", "-publish-binary"}
	for _, c := range commands {
		want = append(want, c.name+" "+c.args, c.summary)
	}
	for _, args := range [][]string{{"--help"}, {"-help"}, {"-h"}, {"help"}} {
		r := runBinary(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", args, r.code, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%q: help lacks %q:\n%s", args, w, r.stdout)
			}
		}
	}
}

// Each subcommand used wrongly prints what was wrong and its own usage on
// stderr, nothing on stdout, and exits 2.
func TestSubcommandMisuse(t *testing.T) {
	for _, name := range []string{"counters", "stacks"} {
		for _, args := range [][]string{{}, {"1", "2"}, {"not-a-pid"}, {"0"}, {"-5"}, {"-bogus", "1"}, {"1", "extra"}} {
			r := runBinary(t, append([]string{name}, args...)...)
			usage := "usage: containerd-shim-watch-v2 " + name + " PID|ADDRESS"
			if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "containerd-shim-watch-v2 "+name+": ") || !strings.Contains(r.stderr, usage) {
				t.Errorf("%s %q: exit %d, stdout %q, stderr:\n%s\nwant exit 2, the error and %q on stderr", name, args, r.code, r.stdout, r.stderr, usage)
			}
		}
	}
}

// `COMMAND -h` and `help COMMAND` print the command's usage and exit 0.
func TestSubcommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {"help", c.name}} {
			r := runBinary(t, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: containerd-shim-watch-v2 "+c.name+" ") || r.stderr != "" {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
			}
		}
	}
	if r := runBinary(t, "help", "nosuch"); r.code != 2 || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("help nosuch: exit %d, stderr %q; want 2 and the usage", r.code, r.stderr)
	}
}

// A command that is right but fails (no such shim) says why and exits 1,
// without the usage.
func TestSubcommandFailure(t *testing.T) {
	r := runBinary(t, "counters", "/nonexistent/shim.sock")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "containerd-shim-watch-v2 counters: ") || strings.Contains(r.stderr, "usage:") {
		t.Errorf("counters on a missing socket: exit %d, stderr %q; want 1 and the error alone", r.code, r.stderr)
	}
}

// Command lines containerd never writes get the binary's usage and exit 2:
// an unknown command or flag, a missing namespace, a second action.
func TestInvocationMisuse(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"-nosuchflag"}, {"start"},
		{"-namespace", "ns", "frobnicate"}, {"-namespace", "ns", "start", "delete"}} {
		r := runBinary(t, args...)
		if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "containerd-shim-watch-v2: ") || !strings.Contains(r.stderr, "Commands:") {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and the usage on stderr", args, r.code, r.stdout, r.stderr)
		}
	}
}

// containerd's own invocations still reach their actions: -v, -info, and
// `... -id ID delete` as containerd writes it (here refused for its bad
// id by the delete action itself: exit 1, no usage).
func TestContainerdInvocations(t *testing.T) {
	if r := runBinary(t, "-v"); r.code != 0 || !strings.Contains(r.stdout, "Version:") {
		t.Errorf("-v: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// -info asks runc for its features: without runc on PATH it fails
	// (exit 1), but as an action, not as a usage error.
	if r := runBinary(t, "-info"); r.code == 2 || strings.Contains(r.stderr, "usage") || (r.code == 0 && r.stdout == "") {
		t.Errorf("-info: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r := runBinary(t, "-namespace", "ns", "-address", "/run/x.sock", "-publish-binary", "/bin/containerd", "-id", "../x", "delete")
	if r.code != 1 || strings.Contains(r.stderr, "usage") || !strings.Contains(r.stderr, "io.containerd.watch.v2: ") {
		t.Errorf("delete with a bad id: exit %d, stderr %q; want 1 and the action's error", r.code, r.stderr)
	}
}
