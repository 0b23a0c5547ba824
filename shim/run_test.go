package shim

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
)

// containerd 2.x runs shims as: -namespace NS -address ADDR -publish-binary
// BIN -id ID [-bundle DIR] [-debug] ACTION (core/runtime/v2/command.go).
func TestParseFlagsAsContainerdPassesThem(t *testing.T) {
	f, err := parseFlags([]string{"shim", "-namespace", "k8s.io", "-address", "/run/c.sock",
		"-publish-binary", "/usr/bin/containerd", "-id", "abc", "-bundle", "/b", "-debug", "start"})
	if err != nil {
		t.Fatal(err)
	}
	if f.namespace != "k8s.io" || f.address != "/run/c.sock" || f.id != "abc" || f.bundle != "/b" || !f.debug || f.action != "start" {
		t.Fatalf("parsed %+v", f)
	}
	if _, err := parseFlags([]string{"shim", "-no-such-flag"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestRunRefusesBadInvocations(t *testing.T) {
	m := &Manager{}
	if err := run(m, flags{action: "start"}); err == nil {
		t.Error("start without a namespace accepted")
	}
	if err := run(m, flags{namespace: "ns", action: "frobnicate"}); err == nil {
		t.Error("unknown action accepted")
	}
	if err := run(m, flags{namespace: "ns", id: "../x", bundle: t.TempDir(), action: "delete"}); err == nil {
		t.Error("delete with a path-like id accepted")
	}
}

// The socket of a group is the same one containerd's shim framework would
// pick, so tools that find shim sockets that way keep working.
func TestSocketAddress(t *testing.T) {
	got := socketAddress("/run/containerd/containerd.sock", "k8s.io", "pod1")
	want := fmt.Sprintf("unix:///run/containerd/s/%x", sha256.Sum256([]byte("/run/containerd/containerd.sock/k8s.io/pod1")))
	if got != want {
		t.Fatalf("socketAddress = %s, want %s", got, want)
	}
	if socketAddress("/a", "ns", "pod1") == socketAddress("/a", "ns", "pod2") {
		t.Fatal("two groups share a socket")
	}
}

// containerd decodes start's reply as JSON bootstrap parameters.
func TestBootstrapParamsJSON(t *testing.T) {
	b, err := json.Marshal(bootstrapParams{Version: 3, Address: "unix:///x", Protocol: "ttrpc"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"version":3,"address":"unix:///x","protocol":"ttrpc"}` {
		t.Fatalf("start prints %s", b)
	}
}
