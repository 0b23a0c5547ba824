package shim

import (
	"testing"
)

// TestGroupOf: our group annotation wins over the CRI sandbox id, which
// wins over the container's own id.
func TestGroupOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"own id", nil, "c1"},
		{"pod", map[string]string{"io.kubernetes.cri.sandbox-id": "pod1"}, "pod1"},
		{"explicit", map[string]string{GroupAnnotation: "web", "io.kubernetes.cri.sandbox-id": "pod1"}, "web"},
		{"empty annotation", map[string]string{GroupAnnotation: ""}, "c1"},
	} {
		if got := groupOf("c1", tc.ann); got != tc.want {
			t.Errorf("%s: groupOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}
