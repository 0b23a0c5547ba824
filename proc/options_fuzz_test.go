package proc

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
)

// quietLog silences the warnings about unknown keys for a fuzz run.
func quietLog(f *testing.F) {
	old := log.GetLevel()
	_ = log.SetLevel("fatal")
	f.Cleanup(func() { log.L.Logger.SetLevel(old) })
}

// FuzzRuntimeOptionsTOML: a runtime options table of any content is read
// without a panic, refused only with InvalidArgument, and never misread:
// where go-toml (what CRI writes it with) reads the same text as a table,
// the runc options we read are the ones its values give, or we refuse it.
func FuzzRuntimeOptionsTOML(f *testing.F) {
	quietLog(f)
	for _, s := range []string{
		"BinaryName = '/opt/runc'\nRoot = \"/run/watch-runc\" # runc state\nSystemdCgroup = true\n" +
			"ShimCgroup = \"/system.slice/shims\"\nIoUid = 1_000\nio_gid = 1001\nNoPivotRoot = false\n" +
			"\"NoNewKeyring\" = true\nSomethingElse = 'ignored'\n\n",
		"BinaryName = \"/usr/bin/runc\"\nSystemdCgroup = true\n",
		"[options]\nRoot = \"/x\"\n",
		"IoUid = -1\n",
		"IoUid = 4294967296\n",
		"Root = \"a\\\"b\\u00e9\" # c\n",
		"Root = 'it''s'\n",
		"TaskAPIVersion = 3\nTaskAPIAddress = \"unix:///x\"\nCriuImagePath = '/i'\nCriuWorkPath = '/w'\n",
		"# only a comment\n\n",
		"SystemdCgroup = \"true\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := runcOptionsFromTOML(body)
		if err != nil {
			_, err = RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigBody: body}))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%q: %v, want InvalidArgument", body, err)
			}
			return
		}
		table := map[string]any{}
		if toml.Unmarshal(body, &table) != nil {
			return // not TOML: we are more lenient than the grammar
		}
		want, ok := optionsFromTable(table)
		if !ok {
			t.Fatalf("%q: read as %v; in TOML its values are not runc options: %v", body, got, table)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%q: read as %v; TOML says %v", body, got, want)
		}
	})
}

// optionsFromTable is what a TOML table's values give as runc options,
// keys matched as runcOptionsFromTOML matches them; false when a value is
// not a scalar or not of the key's type.
func optionsFromTable(table map[string]any) (*options.Options, bool) {
	o := &options.Options{}
	for k, v := range table {
		var tv tomlValue
		switch v := v.(type) {
		case string:
			tv.str = &v
		case bool:
			tv.boolean = &v
		case int64:
			tv.integer = &v
		default:
			return nil, false
		}
		if _, err := setRuncOption(o, k, tv); err != nil {
			return nil, false
		}
	}
	return o, true
}

// FuzzRuntimeOptionsFromCRI: whatever runc options a CRI config sets, as
// CRI encodes the table (go-toml's Marshal of the parsed map), we read back
// exactly, unknown keys beside them ignored.
func FuzzRuntimeOptionsFromCRI(f *testing.F) {
	quietLog(f)
	f.Add("/usr/bin/runc", "/run/containerd/runc", "/system.slice/shims", uint32(1000), uint32(1001), true, "other", int64(7))
	f.Add("", "", "", uint32(0), uint32(0), false, "", int64(0))
	f.Add("a'b\"c\\d\n\te\u00e9\x01", "#", "= x", uint32(1<<32-1), uint32(1), true, "key with space", int64(-1))
	f.Fuzz(func(t *testing.T, binary, root, shimCgroup string, ioUID, ioGID uint32, systemd bool, extraKey string, extra int64) {
		want := &options.Options{BinaryName: binary, Root: root, ShimCgroup: shimCgroup,
			IoUid: ioUID, IoGid: ioGID, SystemdCgroup: systemd}
		table := map[string]any{"BinaryName": binary, "Root": root, "ShimCgroup": shimCgroup,
			"IoUid": int64(ioUID), "IoGid": int64(ioGID), "SystemdCgroup": systemd}
		if known, _ := setRuncOption(&options.Options{}, extraKey, tomlValue{integer: &extra}); !known {
			table[extraKey] = extra
		}
		body, err := toml.Marshal(table)
		if err != nil {
			t.Fatal(err)
		}
		got, err := RuntimeOptions(anyOf(t, &runtimeoptions.Options{ConfigBody: body}))
		if !utf8.Valid(body) {
			// go-toml writes such strings, but TOML and protobuf strings
			// are UTF-8: refused, not changed.
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: read as %v, %v; want InvalidArgument", body, got, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%q: read as %v, want %v", body, got, want)
		}
	})
}
