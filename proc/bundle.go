package proc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

// Pod annotations set by containerd's CRI plugin.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	AnnotationPodName       = "io.kubernetes.cri.sandbox-name"
	AnnotationPodNamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnotationPodUID        = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName = "io.kubernetes.cri.container-name"
	AnnotationImageName     = "io.kubernetes.cri.image-name"
)

// ociSpec is the part of the bundle's config.json (a runtime-spec Spec)
// the shim itself reads; runc reads the whole file. The json tags are
// runtime-spec's.
//
// The shim decodes only this and not specs.Spec on purpose: encoding/json
// keeps its reflection data for every type it ever decoded for the life of
// the process, and specs.Spec's type tree is large (docs/performance.md). Add a field here only when the shim needs it.
type ociSpec struct {
	// Process is only checked for presence: a spec without one is
	// invalid (runc gets the real one from config.json).
	Process     *struct{}         `json:"process,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *ociLinux         `json:"linux,omitempty"`
}

type ociLinux struct {
	Namespaces []ociNamespace `json:"namespaces,omitempty"`
}

type ociNamespace struct {
	Type specs.LinuxNamespaceType `json:"type"`
	Path string                   `json:"path,omitempty"`
}

// readSpec reads what the shim needs of the bundle's OCI spec.
func readSpec(bundle string) (*ociSpec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("bundle %s has no config.json: %w", bundle, errdefs.ErrInvalidArgument)
		}
		return nil, err
	}
	var s ociSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle config.json: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("bundle config.json has no process: %w", errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// BundleAnnotations returns the annotations of the bundle's OCI spec.
func BundleAnnotations(bundle string) (map[string]string, error) {
	s, err := readSpec(bundle)
	if err != nil {
		return nil, err
	}
	return s.Annotations, nil
}

// identityOf tells what the task is within its pod from its annotations.
func identityOf(id, ns string, a map[string]string) exitmon.Identity {
	idn := exitmon.Identity{
		ID: id, Namespace: ns,
		Sandbox:       a[AnnotationContainerType] == "sandbox",
		SandboxID:     a[AnnotationSandboxID],
		PodName:       a[AnnotationPodName],
		PodNamespace:  a[AnnotationPodNamespace],
		PodUID:        a[AnnotationPodUID],
		ContainerName: a[AnnotationContainerName],
		Image:         a[AnnotationImageName],
	}
	if idn.Sandbox && idn.SandboxID == "" {
		idn.SandboxID = id
	}
	return idn
}

// ownPidNamespace reports whether the container gets a new pid namespace,
// where the kernel kills everything when init dies.
func ownPidNamespace(s *ociSpec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

func (c *Container) mountRootfs(mounts []mount.Mount) error {
	if len(mounts) == 0 {
		return nil
	}
	c.rootfs = filepath.Join(c.Bundle, "rootfs")
	if err := os.MkdirAll(c.rootfs, 0o711); err != nil {
		return err
	}
	if err := mount.All(mounts, c.rootfs); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

func (c *Container) unmountRootfs(ctx context.Context) {
	if c.rootfs == "" {
		return
	}
	if err := mount.UnmountAll(c.rootfs, 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
}

// lastRuncLog returns the last message runc wrote to its JSON log.
func lastRuncLog(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			last = e.Msg
		}
	}
	return last
}
