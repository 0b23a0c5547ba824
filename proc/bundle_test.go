package proc

import (
	"encoding/json"
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
	if got := identityOf("pod1", "k8s.io", sandbox.Annotations); got != want {
		t.Errorf("sandbox identity %+v, want %+v", got, want)
	}

	workload := &specs.Spec{Annotations: map[string]string{
		AnnotationContainerType: "container",
		AnnotationSandboxID:     "pod1",
		AnnotationPodName:       "web",
	}}
	want = exitmon.Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "pod1", PodName: "web"}
	if got := identityOf("c1", "k8s.io", workload.Annotations); got != want {
		t.Errorf("workload identity %+v, want %+v", got, want)
	}

	want = exitmon.Identity{ID: "plain", Namespace: "default"}
	if got := identityOf("plain", "default", nil); got != want {
		t.Errorf("identity without annotations %+v, want %+v", got, want)
	}
}

// writeSpec writes s as the bundle's config.json the way containerd does:
// marshalled from runtime-spec's own type, so readSpec's json tags are
// checked against runtime-spec's.
func writeSpec(t *testing.T, dir string, s *specs.Spec) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOwnPidNamespace(t *testing.T) {
	proc := &specs.Process{Args: []string{"/pause"}, Cwd: "/"}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want bool
	}{
		{"no linux", &specs.Spec{Process: proc}, false},
		{"no pid ns", &specs.Spec{Process: proc, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}}}, false},
		{"new pid ns", &specs.Spec{Process: proc, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
		}}}, true},
		{"shared pid ns", &specs.Spec{Process: proc, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"},
		}}}, false},
		{"other ns shared, own pid ns", &specs.Spec{Process: proc, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}, {Type: specs.PIDNamespace},
		}}}, true},
	} {
		dir := t.TempDir()
		writeSpec(t, dir, tc.spec)
		s, err := readSpec(dir)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ownPidNamespace(s); got != tc.want {
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
	for _, bad := range []string{"{", `{"ociVersion":"1.2.0"}`, `{"ociVersion":"1.2.0","process":null}`,
		`{"process":"x"}`, `{"process":{},"annotations":[1]}`, `{"process":{},"linux":{"namespaces":{}}}`} {
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
	if s.Process == nil || s.Annotations["a"] != "b" || s.Linux != nil {
		t.Fatalf("spec %+v", s)
	}

	// A full spec as containerd writes it: everything the shim uses comes
	// through and the rest is skipped.
	full := &specs.Spec{
		Version:  specs.Version,
		Process:  &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"A=1"}, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "h",
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Annotations: map[string]string{
			AnnotationContainerType: "container", AnnotationSandboxID: "pod1",
			AnnotationPodName: "web", AnnotationPodNamespace: "default", AnnotationPodUID: "uid-1",
		},
		Linux: &specs.Linux{
			Resources:   &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			CgroupsPath: "/k8s/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"},
				{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
				{Type: specs.MountNamespace},
			},
			MaskedPaths: []string{"/proc/kcore"},
		},
	}
	writeSpec(t, dir, full)
	if s, err = readSpec(dir); err != nil {
		t.Fatal(err)
	}
	want := exitmon.Identity{ID: "c1", Namespace: "k8s.io", SandboxID: "pod1", PodName: "web", PodNamespace: "default", PodUID: "uid-1"}
	if got := identityOf("c1", "k8s.io", s.Annotations); got != want {
		t.Errorf("identity from config.json %+v, want %+v", got, want)
	}
	if got := identityOf("c1", "k8s.io", full.Annotations); got != want {
		t.Errorf("identityOf %+v, want %+v", got, want)
	}
	if s.Linux == nil || len(s.Linux.Namespaces) != 3 || s.Linux.Namespaces[1] != (ociNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}) {
		t.Errorf("namespaces %+v", s.Linux)
	}
	if ownPidNamespace(s) {
		t.Error("ownPidNamespace with a joined pid namespace")
	}
}
