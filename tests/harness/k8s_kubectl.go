//go:build e2e

package harness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Kubectl runs `kubectl --kubeconfig <admin> args...` and returns its
// stdout. A non-zero exit is an error wrapping *exec.ExitError, with
// kubectl's stderr.
func (k *Cluster) Kubectl(args ...string) (string, error) {
	return k.KubectlInput("", args...)
}

// KubectlInput is Kubectl with stdin (a manifest for `apply -f -`, say).
func (k *Cluster) KubectlInput(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.bins.kubectl, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Apply runs `kubectl apply -f -` with manifest (YAML or JSON).
func (k *Cluster) Apply(manifest string) error {
	_, err := k.KubectlInput(manifest, "apply", "-f", "-")
	return err
}
