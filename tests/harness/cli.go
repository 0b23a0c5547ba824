//go:build e2e

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// commandTimeout bounds every ctr and crictl call.
const commandTimeout = 2 * time.Minute

// Ctr runs `ctr --address <sock> -n <Namespace> args...` and returns its
// stdout. A non-zero exit is an error wrapping *exec.ExitError (see ExitCode).
func (c *Containerd) Ctr(args ...string) (string, error) {
	return c.CtrNS(c.Namespace, args...)
}

// CtrNS is Ctr in namespace ns.
func (c *Containerd) CtrNS(ns string, args ...string) (string, error) {
	return c.run(context.Background(), commandTimeout, c.bins.ctr, c.ctrArgs(ns, args...))
}

// CtrContext is Ctr bounded by ctx instead of the default timeout.
func (c *Containerd) CtrContext(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, 0, c.bins.ctr, c.ctrArgs(c.Namespace, args...))
}

// Crictl runs `crictl --runtime-endpoint unix://<sock> args...` and returns its stdout.
func (c *Containerd) Crictl(args ...string) (string, error) {
	return c.run(context.Background(), commandTimeout, c.bins.crictl, c.crictlArgs(args...))
}

// ImportImages imports the busybox and pause test images into namespace k8s.io.
func (c *Containerd) ImportImages() error {
	for _, name := range []string{"pause.tar", "busybox.tar"} {
		archive := filepath.Join(c.bins.images, name)
		if _, err := c.CtrNS("k8s.io", "images", "import", "--local", "--all-platforms", archive); err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
	}
	return nil
}

// ctrArgs returns ctr's global flags for namespace ns followed by args,
// with a private --fifo-dir for the subcommands that create fifos.
func (c *Containerd) ctrArgs(ns string, args ...string) []string {
	return append([]string{"--address", c.Address, "--namespace", ns}, c.withFifoDir(args)...)
}

func (c *Containerd) crictlArgs(args ...string) []string {
	ep := "unix://" + c.Address
	return append([]string{"--config", filepath.Join(c.Dir, "crictl.yaml"),
		"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)
}

// run executes bin with args; timeout 0 means only ctx bounds it.
func (c *Containerd) run(ctx context.Context, timeout time.Duration, bin string, args []string) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = c.env()
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(filterWarnings(stderr.String()))
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(userArgs(args), " "), err, msg)
	}
	return stdout.String(), nil
}

// userArgs drops the leading global flags (and their values) of a ctr or
// crictl call, and the --fifo-dir the harness inserts.
func userArgs(args []string) []string {
	for len(args) >= 2 && strings.HasPrefix(args[0], "--") {
		args = args[2:]
	}
	if i := slices.Index(args, "--fifo-dir"); i >= 0 && i+1 < len(args) {
		args = slices.Concat(args[:i], args[i+2:])
	}
	return args
}

// filterWarnings drops containerd 2.2's cgroup v1 deprecation warnings.
func filterWarnings(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "cgroup v1") || strings.Contains(line, "cgroupv1") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// ExitCode returns the exit code of a failed Ctr or Crictl call, 0 for nil
// and -1 when err is not an exit.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func writeCrictlConfig(dir string) error {
	return os.WriteFile(filepath.Join(dir, "crictl.yaml"), []byte("timeout: 60\n"), 0o644)
}
