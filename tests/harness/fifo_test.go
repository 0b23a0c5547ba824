//go:build e2e

package harness

import (
	"slices"
	"testing"
)

// TestWithFifoDir checks where ctr calls get their private --fifo-dir:
// right after the subcommands that create fifos, nowhere else.
func TestWithFifoDir(t *testing.T) {
	c := &Containerd{Dir: "/d"}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"run", "-d", "img", "x"}, []string{"run", "--fifo-dir", "/d/fifo/init", "-d", "img", "x"}},
		{[]string{"tasks", "start", "x"}, []string{"tasks", "start", "--fifo-dir", "/d/fifo/init", "x"}},
		{[]string{"t", "exec", "--exec-id", "e", "x", "true"},
			[]string{"t", "exec", "--fifo-dir", "/d/fifo/exec", "--exec-id", "e", "x", "true"}},
		{[]string{"task", "exec", "--log-uri", "file:///l", "--exec-id", "e", "x", "true"},
			[]string{"task", "exec", "--log-uri", "file:///l", "--exec-id", "e", "x", "true"}},
		{[]string{"run", "--log-uri=binary:///l", "img", "x"}, []string{"run", "--fifo-dir", "/d/fifo/init", "--log-uri=binary:///l", "img", "x"}},
		{[]string{"tasks", "kill", "x"}, []string{"tasks", "kill", "x"}},
		{[]string{"tasks", "attach", "x"}, []string{"tasks", "attach", "x"}},
		{[]string{"events"}, []string{"events"}},
		{nil, nil},
	} {
		if got := c.withFifoDir(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("withFifoDir(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestUserArgsDropsFifoDir checks that error messages name a ctr call as
// the test wrote it, without the harness's flags.
func TestUserArgsDropsFifoDir(t *testing.T) {
	c := &Containerd{Dir: "/d", Address: "/d/containerd.sock"}
	got := userArgs(c.ctrArgs("k8s.io", "tasks", "exec", "--exec-id", "e", "x", "true"))
	if want := []string{"tasks", "exec", "--exec-id", "e", "x", "true"}; !slices.Equal(got, want) {
		t.Errorf("userArgs = %q, want %q", got, want)
	}
}
