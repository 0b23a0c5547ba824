package proc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRuntimeOptionsRunc(t *testing.T) {
	o, err := RuntimeOptions(nil)
	if err != nil || !proto.Equal(o, &options.Options{}) {
		t.Fatalf("nil: %v, %v; want the defaults", o, err)
	}
	want := &options.Options{BinaryName: "/opt/runc", Root: "/run/r", SystemdCgroup: true, ShimCgroup: "/shims", IoUid: 7}
	o, err = RuntimeOptions(anyOf(t, want))
	if err != nil || !proto.Equal(o, want) {
		t.Fatalf("runc options: %v, %v; want %v", o, err, want)
	}
	if _, err := RuntimeOptions(anyOf(t, &emptypb.Empty{})); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("options of another type: %v, want InvalidArgument", err)
	}
	if _, err := RuntimeOptions(&anypb.Any{TypeUrl: "no.such/Type", Value: []byte{1}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown type: %v, want InvalidArgument", err)
	}
}

// CRI passes a runtime type other than runc's the options table of
// config.toml as TOML, in containerd's generic runtime options.
func TestRuntimeOptionsFromCRITable(t *testing.T) {
	body := `BinaryName = '/opt/runc'
Root = "/run/watch-runc" # runc state
SystemdCgroup = true
ShimCgroup = "/system.slice/shims"
IoUid = 1_000
io_gid = 1001
NoPivotRoot = false
"NoNewKeyring" = true
SomethingElse = 'ignored'

`
	o, err := RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigBody: []byte(body)}))
	if err != nil {
		t.Fatal(err)
	}
	want := &options.Options{BinaryName: "/opt/runc", Root: "/run/watch-runc", SystemdCgroup: true,
		ShimCgroup: "/system.slice/shims", IoUid: 1000, IoGid: 1001, NoNewKeyring: true}
	if !proto.Equal(o, want) {
		t.Fatalf("got %v, want %v", o, want)
	}

	// ConfigPath names a file instead; it wins over a body.
	path := filepath.Join(t.TempDir(), "runc.toml")
	if err := os.WriteFile(path, []byte("BinaryName = \"/file/runc\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigPath: path, ConfigBody: []byte(body)}))
	if err != nil || !proto.Equal(o, &options.Options{BinaryName: "/file/runc"}) {
		t.Fatalf("config path: %v, %v", o, err)
	}
	_, err = RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigPath: path + ".missing"}))
	if !errdefs.IsNotFound(err) {
		t.Fatalf("missing config path: %v, want NotFound", err)
	}

	// An empty table is the defaults.
	o, err = RuntimeOptions(anyOf(t, &runtimeoptions.Options{}))
	if err != nil || !proto.Equal(o, &options.Options{}) {
		t.Fatalf("empty table: %v, %v", o, err)
	}
}

func TestRuntimeOptionsBadTable(t *testing.T) {
	for _, body := range []string{
		`SystemdCgroup = "yes"`,
		`BinaryName = true`,
		`IoUid = -1`,
		`IoUid = 4294967296`,
		`Root = "/unterminated`,
		`Root = '/unterminated`,
		`Root = "/a" "/b"`,
		`BinaryName`,
		`[plugins.x]`,
		`SystemdCgroup = maybe`,
	} {
		_, err := RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigBody: []byte(body)}))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want InvalidArgument", body, err)
		}
	}
}

func TestTOMLScalarStrings(t *testing.T) {
	for in, want := range map[string]string{
		`"a\"b\\c"`:           `a"b\c`,
		`'C:\path'`:           `C:\path`,
		`"with # inside" # c`: "with # inside",
		`"\u00e9"`:            "é",
	} {
		v, err := tomlScalar(in)
		if err != nil || v.str == nil || *v.str != want {
			t.Errorf("%s: %v, %v; want %q", in, v.str, err, want)
		}
	}
	if _, err := tomlScalar(`"a" b`); err == nil {
		t.Errorf("trailing garbage accepted")
	}
}
