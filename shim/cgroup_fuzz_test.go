package shim

import (
	"context"
	"testing"
	"unicode/utf8"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/log"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
)

// quietLog silences the warnings about options that do not decode.
func quietLog(f *testing.F) {
	old := log.GetLevel()
	_ = log.SetLevel("fatal")
	f.Cleanup(func() { log.L.Logger.SetLevel(old) })
}

// FuzzStartOptions: whatever containerd (or anyone) writes to a starting
// shim's stdin is read without a panic, and every options it finds are
// runc options that encode (so they came from a valid message).
func FuzzStartOptions(f *testing.F) {
	quietLog(f)
	runcOpts := marshalAny(f, &options.Options{ShimCgroup: "/shims/a"})
	criOpts := marshalAny(f, &runtimeoptions.Options{ConfigBody: []byte("ShimCgroup = '/shims/b'\nSystemdCgroup = true\n")})
	for _, b := range [][]byte{runcOpts, criOpts, bootstrapStdin(runcOpts), bootstrapStdin(criOpts),
		bootstrapStdin(nil), []byte("\xff\xff\xff"), {}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o := startOptions(context.Background(), b)
		if o == nil {
			return
		}
		if _, err := proto.Marshal(o); err != nil {
			t.Fatalf("%q: options %v do not encode: %v", b, o, err)
		}
	})
}

// FuzzStartOptionsShimCgroup: the ShimCgroup containerd sets, in either
// bootstrap (2.2's bare options, 2.4's BootstrapParams) and either
// wrapping (runc options, CRI's TOML table), is the one the shim joins.
func FuzzStartOptionsShimCgroup(f *testing.F) {
	quietLog(f)
	f.Add("/shims/a", false, false)
	f.Add("/system.slice/watch shims", true, true)
	f.Add("'\"\\\n\t#=", true, false)
	f.Fuzz(func(t *testing.T, cg string, cri, bootstrap bool) {
		if !utf8.ValidString(cg) || cg == "" {
			return // not a protobuf or TOML string, or no cgroup to join
		}
		var b []byte
		if cri {
			body, err := toml.Marshal(map[string]any{"ShimCgroup": cg, "SystemdCgroup": true})
			if err != nil {
				t.Fatal(err)
			}
			b = marshalAny(t, &runtimeoptions.Options{ConfigBody: body})
		} else {
			b = marshalAny(t, &options.Options{ShimCgroup: cg})
		}
		if bootstrap {
			b = bootstrapStdin(b)
		}
		o := startOptions(context.Background(), b)
		if o == nil || o.ShimCgroup != cg {
			t.Fatalf("ShimCgroup %q (cri %v, bootstrap %v): read %v", cg, cri, bootstrap, o)
		}
	})
}
