package proc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
)

func TestIdentityOf(t *testing.T) {
	sandbox := &specs.Spec{Annotations: map[string]string{
		AnnotationContainerType: "sandbox",
		AnnotationPodName:       "web",
		AnnotationPodNamespace:  "default",
		AnnotationPodUID:        "uid-1",
	}}
	want := exitmon.Identity{ID: "pod1", Namespace: "k8s.io", Sandbox: true, SandboxID: "pod1",
		PodName: "web", PodNamespace: "default", PodUID: "uid-1"}
	if got := IdentityOf("pod1", "k8s.io", sandbox); got != want {
		t.Errorf("sandbox identity %+v, want %+v", got, want)
	}

	workload := &specs.Spec{Annotations: map[string]string{
		AnnotationContainerType: "container",
		AnnotationSandboxID:     "pod1",
		AnnotationPodName:       "web",
	}}
	want = exitmon.Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "pod1", PodName: "web"}
	if got := IdentityOf("c1", "k8s.io", workload); got != want {
		t.Errorf("workload identity %+v, want %+v", got, want)
	}

	want = exitmon.Identity{ID: "plain", Namespace: "default"}
	if got := IdentityOf("plain", "default", &specs.Spec{}); got != want {
		t.Errorf("identity without annotations %+v, want %+v", got, want)
	}
}

func TestOwnPidNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want bool
	}{
		{"no linux", &specs.Spec{}, false},
		{"no pid ns", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}}}, false},
		{"new pid ns", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
		}}}, true},
		{"shared pid ns", &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"},
		}}}, false},
	} {
		if got := ownPidNamespace(tc.spec); got != tc.want {
			t.Errorf("%s: ownPidNamespace = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := readSpec(dir); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("missing config.json: %v, want InvalidArgument", err)
	}
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"{", `{"ociVersion":"1.2.0"}`} {
		write(bad)
		if _, err := readSpec(dir); !errdefs.IsInvalidArgument(err) {
			t.Errorf("config.json %q: %v, want InvalidArgument", bad, err)
		}
	}
	write(`{"ociVersion":"1.2.0","process":{"args":["/pause"],"cwd":"/"},"annotations":{"a":"b"}}`)
	s, err := readSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.Args[0] != "/pause" || s.Annotations["a"] != "b" {
		t.Fatalf("spec %+v", s)
	}
}
