package proc

import (
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	"google.golang.org/protobuf/proto"
)

// TestRuncOptionsTOMLAsTOMLReadsIt: what the table reader accepts it reads
// as TOML does; what it cannot, it refuses (cases the fuzz targets found or
// that TOML's grammar lists).
func TestRuncOptionsTOMLAsTOMLReadsIt(t *testing.T) {
	for _, c := range []struct {
		body string
		want *options.Options // nil: refused
	}{
		{"\"Bin\\u0061ryName\" = \"/r\"\n", &options.Options{BinaryName: "/r"}},
		{"'Root' = 'C:\\x' # literal\n", &options.Options{Root: `C:\x`}},
		{"Root = \"a\\tb\\\"c\\U0001F600\"\n", &options.Options{Root: "a\tb\"c\U0001F600"}},
		{"IoUid = +1_000\r\n", &options.Options{IoUid: 1000}},
		{"Root = \"\\x41\"\n", nil},   // not a TOML escape
		{"Root = \"\\uD800\"\n", nil}, // a surrogate
		{"Root = \"a\x01\"\n", nil},   // a control character
		{"Root = \"\xff\"\n", nil},    // not UTF-8
		{"Root = \"\"\"x\"\"\"\n", nil},
		{"IoUid = 010\n", nil},
		{"IoUid = 1__0\n", nil},
		{"IoUid = 0x10\n", nil},
		{"IoUid = -+1\n", nil},
		{"SystemdCgroup.x = true\n", nil},
		{"a.b = 1\n", nil},
		{"Some Key = 1\n", nil},
		{"SystemdCgroup = true\nsystemd_cgroup = false\n", nil},
		{"\"a=b\" = 1\nRoot = '/r'\n", &options.Options{Root: "/r"}},
	} {
		got, err := runcOptionsFromTOML([]byte(c.body))
		switch {
		case c.want == nil && err == nil:
			t.Errorf("%q: read as %v, want refused", c.body, got)
		case c.want != nil && err != nil:
			t.Errorf("%q: %v", c.body, err)
		case c.want != nil && !proto.Equal(got, c.want):
			t.Errorf("%q: read as %v, want %v", c.body, got, c.want)
		}
	}
}
